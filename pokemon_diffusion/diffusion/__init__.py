"""The diffusion process: the noise schedule and the reverse process that samples from a model.

``schedule`` (:class:`~.schedule.NoiseSchedule`: the tables and every formula on them, in
``keras.ops``, shared with training), ``steps`` (one DDPM / DDIM step, guidance, the DDIM
timesteps), ``compiled`` (the reverse loop as one ``tf.function``), ``samplers`` (``sample`` and
its public :class:`~.samplers.SamplingPlan`), ``streaming`` (``iter_sample``: frames while
sampling), ``reconstruct`` (noise real images part of the way and denoise them back).
"""
