"""A real (tiny, linear) generator module for tests whose answers need a closed form."""
import torch
from torch import nn


class LinearGenerator(nn.Module):
    """Its image is its ws, times 2: edits act on the image linearly and a path's distance
    is known in closed form."""

    def __init__(self, dim: int = 6, num_ws: int = 3):
        super().__init__()
        self.z_dim = self.w_dim = dim
        self.num_ws = num_ws
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.synthesis = self.forward_synthesis

    def mapping(self, z, c=None, truncation_psi=1, truncation_cutoff=None):
        return z[:, None, :].repeat(1, self.num_ws, 1)               # [N, L, D]

    def forward_synthesis(self, ws, noise_mode="const"):
        return (self.scale * ws)[:, None]                            # [N, 1, L, D]
