"""The U-Net: ``unet.build_unet(ModelConfig)``, its registered layers in ``layers`` and the
layers' fast paths (folded norms, fused BatchNorm) in ``fast_norm``."""
