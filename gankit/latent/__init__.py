"""Latent-space math: sampling and mapping, boundaries and their solvers, directions, edits,
inversion (optimisation, encoders, PTI) and the metrics on them."""
