"""The toy world's factors: what each face is, with a documented joint distribution, and its
true labels. gankit.toy.render draws them.

Generative model (U = uniform, N = standard normal, clip to the factor's range):

    age        ~ U(0, 1)                                  label old        = age > 0.6   (0.40)
    eyeglasses ~ Bernoulli(0.1 + 0.5 * age)               label eyeglasses = 1           (0.35)
    skin_tone  ~ U(0, 1), 0 light .. 1 dark               label dark_skin  = tone > 0.5  (0.50)
    hair_color = clip(0.75 - 0.7 * skin_tone + 0.25 N)    label blond_hair = hair > 0.6  (0.273)
                 0 black .. 0.35 dark brown .. 0.6 light brown .. 1 golden blond
    yaw        ~ U(-1, 1), > 0 turned to the image right  label yaw        = yaw > 0     (0.50)
    smile      = clip(0.5 + 0.1 * yaw + 0.3 N)            label smile      = smile > 0.5 (0.50)
    background ~ U(0, 1), hue blue .. purple .. orange-red label warm_background = bg > 0.5 (0.50)

Deliberate correlations (so disentanglement has something real to undo):
    P(eyeglasses | old) = 0.50   vs  P(eyeglasses | not old)   = 0.25
    P(blond | light skin) = 0.463 vs  P(blond | dark skin)     = 0.082
    P(smile | yaw > 0)  = 0.565  vs  P(smile | yaw <= 0)       = 0.435   (weak)
background is independent of everything: a control attribute.
`true_rates()` and `conditional_rates()` compute these numbers in closed form.

Nuisance factors, all independent: face_scale U(0.92, 1.06), face_dx U(-0.035, 0.035),
face_dy U(-0.03, 0.03) (fractions of the image), hair_length U(0, 1) (short crop .. long
hair to the shoulders), hair_part U(-1, 1) (slant of the fringe), bg_shade U(-1, 1)
(background brightness), shirt_hue U(0, 1).

Determinism: draw k of row i with seed s is a counter-based hash of (s, i, k), so
`sample_factors(10, s)[5:]` equals `sample_factors(5, s, start=5)`: rows never depend on
batch size, worker count or restarts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np


@dataclass(frozen=True)
class AttributeSpec:
    name: str             # label name, also the classifier's logit name
    factor: str           # the factor it is read from
    kind: str             # 'binary' (factor is 0/1) or 'continuous'
    threshold: float      # label = factor > threshold
    description: str


ATTRIBUTES = (
    AttributeSpec("smile", "smile", "continuous", 0.5,
                  "smile in [0, 1]: 0 down-curved mouth, 0.5 flat line, 1 wide open smile"),
    AttributeSpec("eyeglasses", "eyeglasses", "binary", 0.5,
                  "thick dark-rimmed glasses; more likely with age"),
    AttributeSpec("blond_hair", "hair_color", "continuous", 0.6,
                  "hair colour in [0, 1]: black, brown, light brown, golden blond; "
                  "less likely blond with dark skin"),
    AttributeSpec("old", "age", "continuous", 0.6,
                  "age in [0, 1]: grey hair, white eyebrows, receding hairline, lines"),
    AttributeSpec("yaw", "yaw", "continuous", 0.0,
                  "head yaw in [-1, 1]; label: facing the image right (yaw > 0)"),
    AttributeSpec("dark_skin", "skin_tone", "continuous", 0.5,
                  "skin tone in [0, 1] from pale to dark brown"),
    AttributeSpec("warm_background", "background", "continuous", 0.5,
                  "background hue in [0, 1]: blue, purple, orange-red; independent"),
)
ATTRIBUTE_NAMES = tuple(a.name for a in ATTRIBUTES)
# name -> (low, high) of every factor; nuisance factors after the attribute factors
FACTOR_RANGES = {
    "smile": (0.0, 1.0), "eyeglasses": (0.0, 1.0), "hair_color": (0.0, 1.0),
    "age": (0.0, 1.0), "yaw": (-1.0, 1.0), "skin_tone": (0.0, 1.0), "background": (0.0, 1.0),
    "face_scale": (0.92, 1.06), "face_dx": (-0.035, 0.035), "face_dy": (-0.03, 0.03),
    "hair_length": (0.0, 1.0), "hair_part": (-1.0, 1.0), "bg_shade": (-1.0, 1.0),
    "shirt_hue": (0.0, 1.0),
}
FACTOR_NAMES = tuple(FACTOR_RANGES)
NUISANCE_NAMES = tuple(n for n in FACTOR_NAMES if n not in {a.factor for a in ATTRIBUTES})
_SPEC = {a.name: a for a in ATTRIBUTES}

Factors = dict   # factor name -> [N] float32 array (a "batch"); scalars for one row


# ----------------------------------------------------------------------------------------
# Sampling: counter-based, so row i depends only on (seed, i)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective avalanche on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _uniform(seed: int, rows: np.ndarray, draw: int) -> np.ndarray:
    """U(0, 1) open interval, one per row: a hash of (seed, row, draw). [N] float64."""
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(draw + 1))
        h = _mix64(_mix64(key ^ rows.astype(np.uint64)) + np.uint64(0x632BE59BD9B4E019))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0 ** 53


def _normal(seed: int, rows: np.ndarray, draw: int) -> np.ndarray:
    """N(0, 1) per row by Box-Muller from draws `draw` and `draw + 1`. [N] float64."""
    u1, u2 = _uniform(seed, rows, draw), _uniform(seed, rows, draw + 1)
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


def _between(u: np.ndarray, name: str) -> np.ndarray:
    lo, hi = FACTOR_RANGES[name]
    return lo + (hi - lo) * u


def sample_factors(n: int, seed: int, start: int = 0) -> Factors:
    """Factors of rows start .. start+n-1 for `seed`: name -> [n] float32."""
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    if not 0 <= seed < 2 ** 63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    rows = np.arange(start, start + n, dtype=np.uint64)
    u = lambda k: _uniform(seed, rows, k)                                # noqa: E731
    age, skin, yaw = u(0), u(1), 2 * u(2) - 1
    f = {
        "age": age,
        "eyeglasses": (u(3) < 0.1 + 0.5 * age).astype(np.float64),
        "skin_tone": skin,
        "hair_color": np.clip(0.75 - 0.7 * skin + 0.25 * _normal(seed, rows, 4), 0, 1),
        "yaw": yaw,
        "smile": np.clip(0.5 + 0.1 * yaw + 0.3 * _normal(seed, rows, 6), 0, 1),
        "background": u(8),
    }
    for k, name in enumerate(NUISANCE_NAMES):
        f[name] = _between(u(16 + k), name)
    return {name: f[name].astype(np.float32) for name in FACTOR_NAMES}


def _phi_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _mean_cdf(a: float, b: float) -> float:
    """Mean of Phi(a + b t) over t ~ U(0, 1), exact: [G(a + b) - G(a)] / b, G = x Phi + phi."""
    g = lambda x: x * _phi_cdf(x) + math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return (g(a + b) - g(a)) / b


def true_rates() -> dict:
    """Marginal positive rate of every binary label, exact for the generative model."""
    return {
        "smile": 0.5,                                   # symmetric in yaw and noise
        "eyeglasses": 0.1 + 0.5 * 0.5,                  # E[0.1 + 0.5 age]
        "blond_hair": _mean_cdf(0.6, -2.8),             # P(0.75 - 0.7 t + 0.25 N > 0.6)
        "old": 0.4,
        "yaw": 0.5,
        "dark_skin": 0.5,
        "warm_background": 0.5,
    }


def conditional_rates() -> dict:
    """The deliberate correlations: (label, condition) -> P(label | condition), exact."""
    return {
        ("eyeglasses", "old"): 0.1 + 0.5 * 0.8,
        ("eyeglasses", "not old"): 0.1 + 0.5 * 0.3,
        ("blond_hair", "light skin"): _mean_cdf(0.6, -1.4),      # tone in [0, 0.5]
        ("blond_hair", "dark skin"): _mean_cdf(-0.8, -1.4),      # tone in [0.5, 1]
        ("smile", "yaw > 0"): _mean_cdf(0.0, 1 / 3),             # P(0.1 y + 0.3 N > 0)
        ("smile", "yaw <= 0"): 1 - _mean_cdf(0.0, 1 / 3),
    }


def labels(factors: Factors) -> dict:
    """Binary labels: attribute name -> [N] bool (factor > threshold)."""
    return {a.name: np.atleast_1d(np.asarray(factors[a.factor]) > a.threshold)
            for a in ATTRIBUTES}


def label_matrix(factors: Factors) -> np.ndarray:
    """[N, A] bool labels in ATTRIBUTE_NAMES order (the classifier's logit order)."""
    lab = labels(factors)
    return np.stack([lab[n] for n in ATTRIBUTE_NAMES], axis=1)


def as_batch(factors: Factors) -> Factors:
    """Scalars (one row) or arrays -> name -> [N] float32; checks names and lengths."""
    missing = [n for n in FACTOR_NAMES if n not in factors]
    if missing:
        raise ValueError(f"factors: missing {missing}")
    out = {n: np.atleast_1d(np.asarray(factors[n], dtype=np.float32)) for n in FACTOR_NAMES}
    lengths = {n: len(v) for n, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"factors: columns differ in length: {lengths}")
    return out


def take(factors: Factors, index) -> Factors:
    """Rows of a batch: an index, slice or mask applied to every factor."""
    return {n: np.atleast_1d(np.asarray(v)[index]) for n, v in as_batch(factors).items()}


def counterfactual(factors: Factors, name: str, value: Union[float, bool]) -> Factors:
    """The same faces with one factor set to `value`; every other factor kept.

    `name` is a factor name or an attribute (label) name, which means its factor. For a
    binary factor pass True/False (or 1/0); for a continuous one a value in its range.
    """
    factor = _SPEC[name].factor if name in _SPEC else name
    if factor not in FACTOR_RANGES:
        raise ValueError(f"name: unknown factor or attribute {name!r}; factors are "
                         f"{list(FACTOR_NAMES)}")
    lo, hi = FACTOR_RANGES[factor]
    value = float(value)
    if not lo <= value <= hi:
        raise ValueError(f"value: {factor} must be in [{lo}, {hi}], got {value}")
    if factor == "eyeglasses" and value not in (0.0, 1.0):
        raise ValueError(f"value: eyeglasses is binary, give 0/1 or False/True, got {value}")
    out = {n: v.copy() for n, v in as_batch(factors).items()}
    out[factor][:] = value
    return out
