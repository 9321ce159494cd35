"""mgdm: measurement-guided diffusion models for medical image synthesis."""
