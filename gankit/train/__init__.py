"""Training of the toy world's models: StyleGAN2 (gan.py) and the attribute classifier."""
