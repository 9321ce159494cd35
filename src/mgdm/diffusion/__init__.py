"""The class-conditional DDPM: diffusers UNet factory, noise schedules, training."""
