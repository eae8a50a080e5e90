"""The `class` option of the stages that sample (sample, dataset) and the checks of what a
generator can do (conditional or not, has W or not), in the driver and in the actors.

A conditional generator (c_dim > 0: class-conditional StyleGAN2-ADA, a BigGAN-like z -> image
model) gets one class per row: `--class 3` (every row), `--class 1,4,7` (row i uniform over
the list) or `--class uniform` (row i uniform over all c_dim classes). Row i's class is drawn
from (seed, i) only (gankit.latent.latents.sample_classes), so it is deterministic like z, and it is
stored in the `class` int64 column; the one-hot label goes to the mapping (StyleGAN) or to
forward(z, c) (a plain model).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from jobs.config import ConfigError, Joins, option, require

UNIFORM = "uniform"


def parse_classes(text: str):
    """'uniform' | '3' | '1,4,7' (a flag's word) -> 'uniform' or [int, ...]."""
    if text.strip() == UNIFORM:
        return UNIFORM
    try:
        return [int(k) for k in text.split(",")]
    except ValueError:
        raise ConfigError("class", f"must be 'uniform', a class index or a comma-separated "
                                   f"list of them (got {text!r})") from None


@dataclass
class ClassOptions:
    classes: Optional[Union[list, str]] = option(
        None, "a conditional generator's class per row: an index, a list '1,4,7' (row i "
              "uniform over it) or 'uniform' (over all classes); stored in column `class`",
        parse=parse_classes, flag="class", metavar="K|K,K,...|uniform",
        identity=Joins(unless=None))     # joins only when set: unconditional outputs resume

    def validate_classes(self) -> None:
        c = self.classes
        require(c is None or c == UNIFORM or (isinstance(c, list) and len(c) > 0 and all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in c)),
                "class", f"must be 'uniform' or a non-empty list of class indices >= 0 "
                         f"(got {c!r})")


def class_choices(classes, c_dim: int, model: str) -> Optional[list]:
    """The class indices rows draw from (None for an unconditional model); ConfigError
    naming `class` when they do not fit the model."""
    if not c_dim:
        require(classes is None, "class", f"applies to conditional generators; {model} "
                                          f"has no class input (c_dim 0)")
        return None
    require(classes is not None, "class", f"must be given: {model} is conditional "
                                          f"(c_dim={c_dim}); use an index, a list or "
                                          f"'uniform'")
    choices = list(range(c_dim)) if classes == UNIFORM else list(classes)
    bad = [k for k in choices if not 0 <= k < c_dim]
    require(not bad, "class", f"index {bad[0] if bad else ''} is out of range for {model} "
                              f"(c_dim={c_dim}: classes 0..{c_dim - 1})")
    return choices


def row_labels(seed: int, ids: np.ndarray, choices: Optional[list]) -> Optional[np.ndarray]:
    """Class [n] int64 of rows `ids` (None for an unconditional model)."""
    from gankit.latent.latents import sample_classes
    return None if choices is None else sample_classes(seed, ids, choices)


def has_w(G) -> bool:
    return getattr(G, "has_w", True)


def check_space(G, space: str, model: str, field: str = "space") -> None:
    """A plain z -> image generator has no W: refuse W / W+ work in one sentence."""
    require(has_w(G) or space == "z", field, f"must be 'z' for {model}: a plain z -> image "
                                             f"generator has no W or W+ (got {space!r})")


def generator_facts(model: str) -> dict:
    """{c_dim, has_w} of a generator, loaded on the driver's CPU: only when a check needs
    them (needs_facts); the actors check the same on what they load."""
    from gankit.loading import zoo
    G = zoo.load_generator(model, device="cpu")
    return {"c_dim": int(getattr(G, "c_dim", 0) or 0), "has_w": has_w(G)}


def needs_facts(model: str, classes) -> bool:
    """A class to check, or a 'script:' program (small, and W-less by contract). Entry
    points may build large models (gankit.models.null): their actors check."""
    from gankit.loading import zoo
    return classes is not None or zoo.parse_spec(model)[0] == "script"


def one_hot_rows(labels: Optional[np.ndarray], c_dim: int, device):
    """labels [n] -> c [n, c_dim] float32 on `device`, or None."""
    from gankit.models.plain import one_hot
    return None if labels is None else one_hot(labels, c_dim, device)
