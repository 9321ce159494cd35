"""Guidance: the measures M(logits, y) and the noise-conditioned classifier p_phi(y | x_t, t)."""
