"""The filters of a labeled synthetic dataset, as pure functions of (ids, logits): a
confidence floor on chosen attributes, and a balance of one attribute's positives and
negatives that keeps the same rows whatever the sharding.

Balance subsamples the majority class by a key that depends on (seed, sample_id) only
(splitmix64's finaliser, twice): the driver scans every row once and records the cap, the
k-th smallest (key, id) of the majority class, in the rule; each worker then keeps a row of
its part when its (key, id) is at most the cap, so the kept rows are the same for any number
of parts or workers.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from gankit.latent.logits import sigmoid


def probabilities(logits: np.ndarray) -> np.ndarray:
    """logits [N, A] -> sigmoid [N, A] float32 (computed in float64, then rounded once)."""
    return sigmoid(logits).astype(np.float32)


def labels(probs: np.ndarray) -> np.ndarray:
    """prob >= 0.5 -> 1, else 0 (int8); from the float32 prob so the two never disagree."""
    return (probs >= 0.5).astype(np.int8)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: uint64 [N] -> uint64 [N], a fixed well-mixed permutation."""
    x = np.asarray(x).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def balance_keys(seed: int, ids: np.ndarray) -> np.ndarray:
    """The subsampling key of each row: depends on (seed, sample_id) only. [N] uint64."""
    return mix64(mix64(np.full(len(ids), seed, dtype=np.uint64)) ^ ids.astype(np.uint64))


def confident(probs: np.ndarray, cols: list, c: Optional[float]) -> np.ndarray:
    """[N] bool: every prob in `cols` is >= c or <= 1 - c (all True when c is None)."""
    if c is None:
        return np.ones(len(probs), dtype=bool)
    p = probs[:, cols]
    return ((p >= c) | (p <= 1.0 - c)).all(axis=1)


def under_cap(keys: np.ndarray, ids: np.ndarray, cap) -> np.ndarray:
    """[N] bool: (key, id) <= cap; cap None keeps all, [] keeps none."""
    if cap is None:
        return np.ones(len(ids), dtype=bool)
    if len(cap) == 0:
        return np.zeros(len(ids), dtype=bool)
    k, i = np.uint64(cap[0]), int(cap[1])
    return (keys < k) | ((keys == k) & (ids <= i))


def keep_mask(ids: np.ndarray, probs: np.ndarray, rule: dict) -> tuple:
    """(passes min_confidence [N], kept [N]) under `rule` (see decide_rule)."""
    conf = confident(probs, rule["confidence_cols"], rule["min_confidence"])
    if rule["balance_col"] is None:
        return conf, conf
    y = labels(probs[:, rule["balance_col"]])                          # [N] 0/1
    keys = balance_keys(rule["seed"], ids)
    keep = conf.copy()
    for cls in (0, 1):
        sel = y == cls
        keep[sel] &= under_cap(keys[sel], ids[sel], rule["caps"][str(cls)])
    return conf, keep


def majority_cap(keys: np.ndarray, ids: np.ndarray, k: int) -> list:
    """The k-th smallest (key, id) of a class, as [key, id]; [] when k == 0."""
    if k == 0:
        return []
    order = np.lexsort((ids, keys))                                    # by key, then id
    j = order[k - 1]
    return [int(keys[j]), int(ids[j])]


def decide_rule(ids: np.ndarray, probs: np.ndarray, names: list, seed: int,
                min_confidence: Optional[float] = None,
                confidence_attributes: Optional[list] = None,
                balance: Optional[str] = None) -> dict:
    """The filter rule (JSON-able) for these rows: which columns, and the balance caps."""
    conf_names = confidence_attributes or names
    rule = {"min_confidence": min_confidence, "seed": seed,
            "confidence_cols": [names.index(a) for a in conf_names],
            "balance_col": names.index(balance) if balance else None,
            "caps": {"0": None, "1": None}}
    if balance:
        conf = confident(probs, rule["confidence_cols"], min_confidence)
        y = labels(probs[conf, rule["balance_col"]])
        ids_c, keys = ids[conf], balance_keys(seed, ids[conf])
        n = [int((y == 0).sum()), int((y == 1).sum())]
        big = int(n[1] > n[0])
        sel = y == big
        rule["caps"][str(big)] = majority_cap(keys[sel], ids_c[sel], n[1 - big])
    return rule


def attribute_rates(probs: np.ndarray, names: list) -> dict:
    """{attr: {positives, negatives, positive_rate, mean_probability}} of rows probs [N, A]."""
    y = labels(probs)
    out = {}
    for j, a in enumerate(names):
        pos = int(y[:, j].sum())
        out[a] = {"positives": pos, "negatives": int(len(y) - pos),
                  "positive_rate": pos / len(y) if len(y) else None,
                  "mean_probability": float(probs[:, j].mean()) if len(y) else None}
    return out


def filter_stats(ids, probs, names, rule) -> dict:
    """Row counts through the filters and attribute rates before and after."""
    conf, keep = keep_mask(ids, probs, rule)
    return {"sampled": int(len(ids)), "removed_by_min_confidence": int((~conf).sum()),
            "removed_by_balance": int((conf & ~keep).sum()), "rows": int(keep.sum()),
            "rates_sampled": attribute_rates(probs, names),
            "rates": attribute_rates(probs[keep], names)}
