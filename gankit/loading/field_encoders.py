"""Encoder checkpoints from the field: the files pSp, e4e and ReStyle's training scripts save
(`psp_ffhq_encode.pt`, `e4e_ffhq_encode.pt`, `restyle_psp_ffhq_encode.pt`,
`restyle_e4e_ffhq_encode.pt`, and their training snapshots), read as data.

Layout (one `torch.save` of a dict):
    state_dict   encoder.*  the encoder (gankit.models.psp's networks, same names)
                 decoder.*  a rosinality StyleGAN2 Generator (gankit.loading.encoder_decoder
                            reads it: `--model FILE` gives the generator)
    latent_avg   [n_styles, w_dim]: the decoder's mean w on every layer; present when
                 trained with start_from_latent_avg (pSp, e4e) and always in ReStyle
    opts         the training options, a plain dict: encoder_type, input_nc, output_size
                 (pSp, ReStyle) or stylegan_size (e4e), start_from_latent_avg,
                 n_iters_per_batch (ReStyle), ...
    and in training snapshots: optimizer, global_step, best_val_loss,
    discriminator_state_dict, ... (ignored)

The file is read by `torch.load(weights_only=True)` (gankit.loading.safe_pickle): nothing in it
runs. The network comes from `encoder_type` and the input channels (3: pSp / e4e, 6: ReStyle,
image + reconstruction); widths, number of styles and w_dim from the weights' shapes;
every key is copied once with its shape checked.

W+ is as each family's inference computes it: pSp and e4e add latent_avg when
start_from_latent_avg was set (and nothing otherwise); ReStyle starts from latent_avg and
its average image and runs `iterations` steps (default: the checkpoint's n_iters_per_batch).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from torch import nn

from gankit.loading.formats import CheckpointError, detect_format, fill_module, load_object
from gankit.loading.rosinality import rosinality_config
from gankit.models import irse, psp

PathLike = Union[str, os.PathLike]

# encoder_type -> (network, backbone). Only these map an image to W+ (pSp's
# BackboneEncoderUsingLastLayerIntoW(Plus) and e4e's SingleStyleCodeEncoder are not read).
ENCODER_TYPES = {
    "GradualStyleEncoder": (psp.GradualStyleEncoder, "ir_se"),
    "ResNetGradualStyleEncoder": (psp.GradualStyleEncoder, "resnet34"),
    "Encoder4Editing": (psp.Encoder4Editing, "ir_se"),
    "BackboneEncoder": (psp.BackboneEncoder, "ir_se"),
    "ResNetBackboneEncoder": (psp.BackboneEncoder, "resnet34"),
    "ProgressiveBackboneEncoder": (psp.ProgressiveBackboneEncoder, "ir_se"),
    "ResNetProgressiveBackboneEncoder": (psp.ProgressiveBackboneEncoder, "resnet34"),
}
PROGRESSIVE = (psp.Encoder4Editing, psp.ProgressiveBackboneEncoder)   # w0 + deltas: e4e
RESTYLE_ITERATIONS = 5      # ReStyle's default n_iters_per_batch (train and test options)
OPTIONAL_KEYS = ("num_batches_tracked",)   # BN step counters: absent from older files


class EncoderCheckpointError(ValueError):
    """Not a usable encoder checkpoint (the message names the file and what is wrong)."""


@dataclass
class EncoderCheckpoint:
    """What an encoder checkpoint holds, read but not built."""
    source: str
    encoder_type: str
    family: str                       # 'psp', 'e4e', 'restyle_psp', 'restyle_e4e'
    opts: dict
    encoder_state: dict               # keys without the 'encoder.' prefix
    latent_avg: Optional[torch.Tensor]
    n_styles: int
    w_dim: int
    input_nc: int
    generator_resolution: int
    decoder_state: dict = field(default_factory=dict)   # keys without 'decoder.'


# ----------------------------------------------------------------------------------------
# Reading


def is_encoder_checkpoint(obj: object) -> bool:
    """A dict whose `state_dict` holds `encoder.*` or `decoder.*` keys (their save layout)."""
    sd = obj.get("state_dict") if isinstance(obj, dict) else None
    return isinstance(sd, dict) and any(
        isinstance(k, str) and k.startswith(("encoder.", "decoder.")) for k in sd)


def prefixed(state: dict, prefix: str) -> dict:
    """{key without `prefix`: tensor} of the keys that start with it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def read_object(path: PathLike) -> object:
    """The unpickled file (torch.load weights_only / the allow-list unpickler)."""
    fmt = detect_format(path)
    if fmt == "gankit":
        raise EncoderCheckpointError(f"{path}: a gankit directory, not an encoder checkpoint")
    try:
        return load_object(str(path), fmt)
    except CheckpointError as e:
        raise EncoderCheckpointError(str(e)) from None


def read_checkpoint(path: PathLike) -> EncoderCheckpoint:
    """Parse an encoder checkpoint file (no network is built)."""
    return parse(read_object(path), str(path))


def parse(obj: object, source: str) -> EncoderCheckpoint:
    if not is_encoder_checkpoint(obj):
        raise EncoderCheckpointError(f"{source}: not an encoder checkpoint (pSp, e4e and ReStyle "
                                     f"save a dict with a 'state_dict' of encoder.* keys)")
    state, opts = obj["state_dict"], obj.get("opts") or {}
    if not isinstance(opts, dict):
        raise EncoderCheckpointError(f"{source}: 'opts' is a {type(opts).__name__}, not a dict")
    enc = prefixed(state, "encoder.")
    if not enc:
        raise EncoderCheckpointError(f"{source}: the state_dict has no encoder.* keys")
    encoder_type = str(opts.get("encoder_type", ""))
    if encoder_type not in ENCODER_TYPES:
        raise EncoderCheckpointError(
            f"{source}: encoder_type {encoder_type!r} is not one gankit reads (it reads "
            f"{', '.join(ENCODER_TYPES)})")
    n_styles = _count(enc, "styles.", ".linear.weight")
    if n_styles == 0:
        raise EncoderCheckpointError(f"{source}: the encoder has no styles.*.linear.weight")
    w_dim = int(_tensor(enc, "styles.0.linear.weight", source).shape[0])
    input_nc = int(_tensor(enc, _stem_key(encoder_type), source).shape[1])
    if input_nc not in (3, 6):
        raise EncoderCheckpointError(f"{source}: the encoder reads {input_nc} channels; gankit "
                                     f"reads image encoders (3, or 6 for ReStyle)")
    network = ENCODER_TYPES[encoder_type][0]
    flavour = "e4e" if issubclass(network, PROGRESSIVE) else "psp"
    family = f"restyle_{flavour}" if input_nc == 6 else flavour
    decoder = prefixed(state, "decoder.")
    ck = EncoderCheckpoint(source, encoder_type, family, opts, enc,
                           _latent_avg(obj, source), n_styles, w_dim, input_nc,
                           _resolution(decoder, opts, n_styles, source), decoder)
    _check_latent_avg(ck)
    return ck


def _stem_key(encoder_type: str) -> str:
    resnet = ENCODER_TYPES[encoder_type][1] == "resnet34"
    return "conv1.weight" if resnet else "input_layer.0.weight"


def _tensor(state: dict, key: str, source: str) -> torch.Tensor:
    t = state.get(key)
    if not isinstance(t, torch.Tensor):
        raise EncoderCheckpointError(f"{source}: missing key 'encoder.{key}'")
    return t


def _count(state: dict, prefix: str, suffix: str) -> int:
    n = 0
    while f"{prefix}{n}{suffix}" in state:
        n += 1
    return n


def _latent_avg(obj: dict, source: str) -> Optional[torch.Tensor]:
    avg = obj.get("latent_avg")
    if avg is not None and not isinstance(avg, torch.Tensor):
        raise EncoderCheckpointError(f"{source}: latent_avg is a {type(avg).__name__}, not a "
                                     f"tensor")
    return None if avg is None else avg.detach().float()


def _check_latent_avg(ck: EncoderCheckpoint) -> None:
    """latent_avg must be [w_dim] or [n_styles, w_dim]; ReStyle and start_from_latent_avg
    need it."""
    avg, src = ck.latent_avg, ck.source
    needs = ck.family.startswith("restyle") or bool(ck.opts.get("start_from_latent_avg"))
    if avg is None:
        if needs:
            raise EncoderCheckpointError(f"{src}: the encoder adds latent_avg (ReStyle, or "
                                         f"start_from_latent_avg) but the file has none")
        return
    if tuple(avg.shape) not in ((ck.w_dim,), (1, ck.w_dim), (ck.n_styles, ck.w_dim)):
        raise EncoderCheckpointError(f"{src}: latent_avg has shape {list(avg.shape)}, expected "
                                     f"[{ck.n_styles}, {ck.w_dim}]")


def _resolution(decoder: dict, opts: dict, n_styles: int, source: str) -> int:
    """The generator's resolution: the decoder's (when the file has one), else the options'
    (output_size: pSp / ReStyle, stylegan_size: e4e; pSp's inference defaults to 1024);
    it must give the encoder's number of styles, 2 log2(res) - 2."""
    if decoder:
        try:
            res = rosinality_config(decoder, source).img_resolution
        except CheckpointError as e:
            raise EncoderCheckpointError(f"{e} (in the decoder.* keys)") from None
    else:
        res = int(opts.get("output_size") or opts.get("stylegan_size") or 1024)
    if 2 * int(math.log2(res)) - 2 != n_styles:
        raise EncoderCheckpointError(f"{source}: the encoder gives {n_styles} styles but its "
                                     f"generator is {res} px ({2 * int(math.log2(res)) - 2} "
                                     f"styles)")
    return res


# ----------------------------------------------------------------------------------------
# Building


def trunk_widths(ck: EncoderCheckpoint) -> tuple:
    """The four stage widths, read from the first unit of each stage."""
    sd, backbone = ck.encoder_state, ENCODER_TYPES[ck.encoder_type][1]
    units = psp.RESNET34_UNITS if backbone == "resnet34" else irse.UNITS[50]
    key = "body.{}.conv1.weight" if backbone == "resnet34" else "body.{}.res_layer.1.weight"
    starts = [sum(units[:k]) for k in range(4)]
    return tuple(int(_tensor(sd, key.format(i), ck.source).shape[0]) for i in starts)


def build_network(ck: EncoderCheckpoint) -> nn.Module:
    """The bare encoder of `ck`, weights copied (eval mode, frozen)."""
    cls, backbone = ENCODER_TYPES[ck.encoder_type]
    net = cls(ck.n_styles, input_nc=ck.input_nc, backbone=backbone, widths=trunk_widths(ck),
              style_dim=ck.w_dim)
    fill(net, ck.encoder_state, ck.source, "encoder.")
    return net.eval().requires_grad_(False)


def fill(module: nn.Module, tensors: dict, source: str, prefix: str = "") -> None:
    """Copy `tensors` into `module` (formats.fill_module; BatchNorm's num_batches_tracked may
    be absent: older files lack it and eval mode ignores it)."""
    fill_module(module, tensors, source, EncoderCheckpointError, optional=OPTIONAL_KEYS,
                prefix=prefix)


def build_encoder(ck: EncoderCheckpoint, iterations: Optional[int] = None) -> psp.FieldEncoder:
    """FieldEncoder (pSp, e4e) or ReStyleEncoder (not yet bound to a generator)."""
    net = build_network(ck)
    if ck.family.startswith("restyle"):
        n = iterations if iterations is not None else \
            int(ck.opts.get("n_iters_per_batch") or RESTYLE_ITERATIONS)
        return psp.ReStyleEncoder(net, ck.latent_avg, ck.generator_resolution, ck.family,
                                  ck.source, iterations=n).eval()
    if iterations is not None:
        raise EncoderCheckpointError(f"{ck.source}: iterations are ReStyle's; this is a "
                                     f"{ck.family} encoder (one pass)")
    avg = ck.latent_avg if ck.opts.get("start_from_latent_avg") else None
    return psp.FieldEncoder(net, avg, ck.generator_resolution, ck.family, ck.source).eval()


def load_field_encoder(path: PathLike, device: Union[str, torch.device] = "cpu",
                       generator: Optional[nn.Module] = None,
                       iterations: Optional[int] = None) -> psp.FieldEncoder:
    """images [N, 3, H, W] in [-1, 1] -> W+, from a pSp / e4e / ReStyle checkpoint.

    `generator`: checked against the encoder (styles, w_dim, resolution); a ReStyle encoder
    renders its reconstructions with it (required for ReStyle). `iterations`: ReStyle's N
    (default: the checkpoint's n_iters_per_batch)."""
    E = build_encoder(read_checkpoint(path), iterations).to(device)
    if generator is not None:
        check_generator(E, generator)
    if isinstance(E, psp.ReStyleEncoder):
        if generator is None:
            raise EncoderCheckpointError(f"{path}: a ReStyle encoder needs the generator it "
                                         f"renders its iterations with")
        E.bind(generator)
    return E


def check_generator(E: psp.FieldEncoder, G) -> None:
    """One sentence when E's W+ does not fit G (number of styles, w_dim, resolution)."""
    if (E.num_ws, E.w_dim, E.generator_resolution) != (G.num_ws, G.w_dim, G.img_resolution):
        raise EncoderCheckpointError(
            f"{E.source}: this {E.family} encoder gives W+ [{E.num_ws}, {E.w_dim}] for a "
            f"{E.generator_resolution} px generator, but the generator takes "
            f"[{G.num_ws}, {G.w_dim}] at {G.img_resolution} px: pair it with the generator "
            f"it was trained for (its own file as --model)")


__all__ = ["EncoderCheckpoint", "EncoderCheckpointError", "ENCODER_TYPES", "read_checkpoint",
           "parse", "build_network", "build_encoder", "load_field_encoder", "check_generator",
           "is_encoder_checkpoint", "prefixed", "fill"]
