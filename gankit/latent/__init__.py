"""Latent-space math: fitting boundaries and the solvers behind them."""
