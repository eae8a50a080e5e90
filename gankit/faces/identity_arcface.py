"""ArcFace identity, the measure pSp, e4e, ReStyle and PTI report: the cosine similarity of
the embeddings of TreB1eN's IR-SE50 (`model_ir_se50.pth`) of two aligned faces.

Their IDLoss reads an FFHQ-aligned image at 256x256 (generator outputs are average-pooled
to 256 first, their `face_pool`), crops rows 35:223 and columns 32:220 (the face), pools the
188x188 crop to 112x112 (adaptive average) and embeds it: `arcface_input` does the same,
`arcface_embeddings` returns the unit-length embeddings [N, 512], `arcface_similarity` the
cosine of pairs. The file is a plain state dict, read with torch.load(weights_only=True)
(gankit.loading.safe_pickle): nothing in it runs. gankit.faces.identity (dlib's descriptor) is
the other measure; the two are on different scales.
"""
from __future__ import annotations

import os
import re
from typing import Union

import torch
import torch.nn.functional as F

from gankit.models import irse

CROP_ROWS, CROP_COLS = (35, 223), (32, 220)     # the face in a 256x256 aligned image
SIDE = 256                                      # the side the crop is defined at
PathLike = Union[str, os.PathLike]


def arcface_input(images: torch.Tensor) -> torch.Tensor:
    """Aligned faces [N, 3, H, W] in [-1, 1] -> ArcFace's input [N, 3, 112, 112]."""
    x = images.float()
    if x.shape[-2:] != (SIDE, SIDE):
        x = F.adaptive_avg_pool2d(x, (SIDE, SIDE))
    x = x[:, :, CROP_ROWS[0]:CROP_ROWS[1], CROP_COLS[0]:CROP_COLS[1]]   # [N, 3, 188, 188]
    return F.adaptive_avg_pool2d(x, (irse.Backbone.input_size,) * 2)


@torch.no_grad()
def arcface_embeddings(net: irse.Backbone, images: torch.Tensor) -> torch.Tensor:
    """Aligned faces [N, 3, H, W] in [-1, 1] -> unit embeddings [N, 512] (float32)."""
    device = next(net.parameters()).device
    return net(arcface_input(images.to(device))).float()


def arcface_similarity(net: irse.Backbone, images: torch.Tensor, others: torch.Tensor
                       ) -> torch.Tensor:
    """Cosine similarity [N] of each image's embedding with its partner's (1: same face)."""
    return (arcface_embeddings(net, images) * arcface_embeddings(net, others)).sum(dim=1)


def load_arcface(path: PathLike, device: Union[str, torch.device] = "cpu") -> irse.Backbone:
    """The IR(-SE) Backbone of a `model_ir_se50.pth`-layout state dict, in eval mode. Depth,
    widths, SE and the last BatchNorm's affine come from the keys and shapes."""
    from gankit.loading import safe_pickle
    from gankit.loading.field_encoders import EncoderCheckpointError, fill
    sd = safe_pickle.load(str(path))
    if not isinstance(sd, dict) or "input_layer.0.weight" not in sd:
        raise EncoderCheckpointError(f"{path}: not an ArcFace state dict (model_ir_se50.pth "
                                     f"layout: input_layer.*, body.*, output_layer.*)")
    net = irse.Backbone(**backbone_config(sd, str(path)))
    fill(net, sd, str(path))
    return net.to(device).eval().requires_grad_(False)


def backbone_config(sd: dict, source: str) -> dict:
    """Backbone keyword arguments read from a state dict's keys and shapes."""
    from gankit.loading.field_encoders import EncoderCheckpointError
    units = {int(m[1]) for k in sd if (m := re.match(r"body\.(\d+)\.", k))}
    try:
        depth = irse.depth_of(len(units))
    except ValueError as e:
        raise EncoderCheckpointError(f"{source}: {e}") from None
    starts = [sum(irse.UNITS[depth][:k]) for k in range(4)]
    key = "body.{}.res_layer.1.weight"
    if any(key.format(i) not in sd for i in starts) or "output_layer.3.weight" not in sd:
        raise EncoderCheckpointError(f"{source}: an incomplete IR network (body units or "
                                     f"output_layer.3.weight missing)")
    return {"num_layers": depth,
            "mode": "ir_se" if "body.0.res_layer.5.fc1.weight" in sd else "ir",
            "widths": tuple(int(sd[key.format(i)].shape[0]) for i in starts),
            "embedding_dim": int(sd["output_layer.3.weight"].shape[0]),
            "affine": "output_layer.4.weight" in sd}


__all__ = ["load_arcface", "arcface_input", "arcface_embeddings", "arcface_similarity"]
