"""gankit: latent-space work on pretrained StyleGAN-family generators.

The library layer: models, latents, boundaries, editing, inversion, metrics, data, report.
It never imports ray; the Ray layer lives in the top-level `jobs` package.
"""
__version__ = "0.1.0"
