"""The U-Net: ``unet.build_unet(ModelConfig)`` and its registered layers in ``layers``."""
