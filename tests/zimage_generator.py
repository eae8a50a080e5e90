"""A tiny DCGAN-style z -> image generator (the plain-generator contract: `z_dim`, `c_dim`,
forward(z, c) -> images [N, 3, H, W] in [-1, 1]), importable as an entry point
'zimage_generator:factory' and scriptable with torch.jit.script."""
import torch
from torch import nn


class TinyDCGAN(nn.Module):
    """z (+ one-hot c) -> 4x4 features -> a transposed conv to 8x8 -> tanh. `scale` > 1
    breaks the range contract (for the bad-input test)."""

    def __init__(self, z_dim: int = 8, c_dim: int = 0, scale: float = 1.0):
        super().__init__()
        self.z_dim, self.c_dim, self.scale = z_dim, c_dim, scale
        self.fc = nn.Linear(z_dim + c_dim, 16 * 4 * 4)
        self.up = nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1)   # 4x4 -> 8x8

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z, c], dim=1)                                  # [N, z_dim + c_dim]
        x = torch.relu(self.fc(x)).view(-1, 16, 4, 4)                 # [N, 16, 4, 4]
        return torch.tanh(self.up(x)) * self.scale                    # [N, 3, 8, 8]


def factory() -> nn.Module:
    torch.manual_seed(0)
    return TinyDCGAN().eval()


def conditional_factory() -> nn.Module:
    torch.manual_seed(0)
    return TinyDCGAN(c_dim=4).eval()
