"""Stage 5: generate Pokémon from prompts with a trained run, and plot the denoising steps.

The seed's last listing, `sample_ddpm(model, get_text_embedding(prompt))` then a plot of the
intermediate images, done with the run's own encoder, schedule and EMA weights, and DDIM with
classifier-free guidance (50 steps instead of 1,000: ~1 s per 32x32 image on a 2-core CPU).

    python examples/05_sample.py --run runs/demo --prompt "a fire-type dragon Pokémon" --num 4
    python examples/05_sample.py --run runs/demo --prompt "a water turtle" --ddpm   # the seed's sampler

Train a run first (examples/04_train.py or `make demo`). The same from the shell:
`pokemon-diffusion sample --run RUN --prompt TEXT --out samples.png --steps-figure steps.png --gif d.gif`.
"""

import argparse
import logging
from pathlib import Path

from pokemon_diffusion.text.embeddings import get_text_embedding, load_encoder_matching
from pokemon_diffusion.diffusion.samplers import sample, sample_ddpm
from pokemon_diffusion.run_dir import load_run
from pokemon_diffusion.viz import plot_denoising_steps, plot_samples, save_denoising_gif, save_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder written by `train`")
    parser.add_argument("--prompt", action="append", required=True, help="repeat for several prompts")
    parser.add_argument("--num", type=int, default=2, help="images per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ddpm", action="store_true", help="the seed's call: sample_ddpm, all T steps")
    parser.add_argument("--out", default="outputs/sample", help="folder for the pictures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    run = load_run(args.run)                           # EMA model, RunConfig, encoder identity
    encoder = load_encoder_matching(run.encoder)       # refuses any other encoder
    model_config = run.config.model
    shape = (args.num, model_config.image_size, model_config.image_size, model_config.channels)
    out = Path(args.out)

    if args.ddpm:
        # the seed's functions and return value: (final images, intermediates), first = noise
        text_emb = get_text_embedding(args.prompt[0], encoder)
        images, steps = sample_ddpm(run.model, text_emb, shape, schedule=run.schedule, seed=args.seed)
        save_figure(plot_denoising_steps(steps, prompts=args.prompt[:1]), out / "ddpm_steps.png")
        print(f"wrote {out / 'ddpm_steps.png'}: {steps.shape[0]} steps of {images.shape[0]} image(s)")
        return

    # one embedding per prompt; the sampler repeats each for its `num` images (prompt-major)
    text_emb = encoder.encode(args.prompt)
    shape = (len(args.prompt) * args.num, *shape[1:])
    steps = min(50, run.schedule.timesteps)
    result = sample(run.model, text_emb, shape, schedule=run.schedule, sampler="ddim", steps=steps,
                    guidance_scale=3.0, seed=args.seed, num_intermediates=10)
    save_figure(plot_samples(result.images, args.prompt), out / "samples.png")
    save_figure(plot_denoising_steps(result, prompts=args.prompt), out / "denoising_steps.png")
    save_denoising_gif(result, out / "denoising.gif")
    print(f"{len(result.images)} images in {result.seconds:.1f} s (seed {result.seed}); "
          f"kept steps t = {result.timesteps.tolist()}; pictures in {out}/")


if __name__ == "__main__":
    main()
