"""Guided DDIM sampling, DDIM inversion and MGDM's two-stage sampler."""
