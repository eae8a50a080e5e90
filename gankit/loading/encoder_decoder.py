"""The generator inside a pSp / e4e / ReStyle encoder checkpoint (gankit.loading.field_encoders):
its `decoder.*` keys are a rosinality Generator (gankit.loading.rosinality), its mean w one row of
the file's `latent_avg`; so `--model e4e_ffhq_encode.pt` gives the generator the encoder was
trained with.
"""
from __future__ import annotations

import torch

from gankit.loading.field_encoders import prefixed
from gankit.loading.formats import Checkpoint, CheckpointError
from gankit.loading.rosinality import from_rosinality


def from_encoder_checkpoint(obj: dict, network: str, source: str) -> Checkpoint:
    """The decoder of a pSp / e4e / ReStyle checkpoint (gankit.loading.field_encoders): a rosinality
    Generator under `decoder.*`, its mean w the file's latent_avg (one row of it)."""
    if network != "G_ema":
        raise CheckpointError(f"{source}: an encoder checkpoint holds one generator (its "
                              f"decoder); use network 'G_ema'")
    sd = prefixed(obj["state_dict"], "decoder.")
    if not sd:
        raise CheckpointError(f"{source}: an encoder checkpoint without a decoder: give the "
                              f"generator it was trained with as the model")
    avg = obj.get("latent_avg")
    if isinstance(avg, torch.Tensor) and avg.ndim == 2:    # [n_styles, w_dim]: w_avg repeated
        avg = avg[0]
    ck = from_rosinality({"g_ema": sd, "latent_avg": avg}, "G_ema", source)
    ck.fmt = "encoder-checkpoint"
    ck.notes["decoder_of"] = str((obj.get("opts") or {}).get("encoder_type", "an encoder"))
    return ck
