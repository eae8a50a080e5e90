"""The toy world: a procedural face renderer driven by known factors.

Every face is drawn (pillow, 4x supersampled then box-filtered) from a row of *factors*:
seven attribute factors with a documented joint distribution, and nuisance factors that
vary the face without touching any attribute. Because the factors are known, the toy
world gives ground truth that real faces cannot: true labels for every sample, and
counterfactual renders (the same face with one factor changed).

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

Visual cues, chosen to stay readable at 32x32 pixels and not to collide:
    smile       open dark mouth with white teeth (half-ellipse, wider with the smile) vs a flat
                or down-curved line
    eyeglasses  thick dark rims around both eyes, bridge and temples; light bluish lenses
    hair_color  hue and lightness of the hair: black/brown vs saturated yellow
    age         greying hair (desaturates toward silver, at most 50 %, so blond stays
                yellowish), white eyebrows, receding hairline, forehead lines and
                nasolabial folds; ramps in smoothly over age 0.35 .. 0.85
    yaw         eyes, nose and mouth shift sideways, the far eye narrows, the nose points,
                the face outline and one ear move the other way
    skin_tone   face colour from pale to dark brown
    background  hue of the flat backdrop

Determinism: draw k of row i with seed s is a counter-based hash of (s, i, k), so
`sample_factors(10, s)[5:]` equals `sample_factors(5, s, start=5)`: rows never depend on
batch size, worker count or restarts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 4          # draw at 4x the output resolution, then box-filter down
RESOLUTIONS = (32, 64, 128)


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


# ----------------------------------------------------------------------------------------
# Colours

def _ramp(t: np.ndarray, stops: list) -> np.ndarray:
    """Piecewise-linear colour ramp: [N] in [0, 1] -> [N, 3] float RGB."""
    pos = [p for p, _ in stops]
    return np.stack([np.interp(t, pos, [c[k] for _, c in stops]) for k in range(3)], axis=1)


SKIN_STOPS = [(0.0, (252, 228, 206)), (0.3, (238, 198, 162)), (0.55, (198, 144, 102)),
              (0.8, (132, 86, 56)), (1.0, (84, 54, 38))]
HAIR_STOPS = [(0.0, (28, 24, 24)), (0.35, (78, 48, 28)), (0.6, (135, 90, 50)),
              (0.8, (212, 170, 70)), (1.0, (248, 218, 100))]
SILVER = np.array([205.0, 205.0, 212.0])


def _hsv(h: np.ndarray, s, v) -> np.ndarray:
    """Vectorised HSV -> RGB in [0, 255]: h in turns, s and v in [0, 1]. [N, 3]."""
    h = (h % 1.0) * 6
    k = np.stack([(5 + h) % 6, (3 + h) % 6, (1 + h) % 6], axis=1)      # [N, 3]
    s, v = np.broadcast_to(s, h.shape)[:, None], np.broadcast_to(v, h.shape)[:, None]
    return 255 * v * (1 - s * np.clip(np.minimum(k, 4 - k), 0, 1))


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def _colours(f: Factors) -> dict:
    """Per-face colours, [N, 3] float each."""
    grey = _smoothstep(f["age"], 0.35, 0.85)[:, None]                   # [N, 1]
    skin = _ramp(f["skin_tone"], SKIN_STOPS)
    hair = _ramp(f["hair_color"], HAIR_STOPS)
    hair = hair + 0.5 * grey * (SILVER - hair)
    brow = hair * 0.75 + grey * (245 - hair * 0.75)                      # white with age
    bg_hue = (220 + 155 * f["background"]) / 360                         # blue .. orange-red
    return {
        "skin": skin, "shade": skin * 0.82, "nose": skin * 0.72,
        "hair": hair, "brow": brow,
        "lens": skin * 0.5 + np.array([215.0, 230, 240]) * 0.5,  # light: contrast on dark skin
        "line": skin + grey * (skin * 0.5 - skin),                       # wrinkles fade in
        "bg": _hsv(bg_hue, 0.55, 0.78 + 0.12 * f["bg_shade"]),
        "shirt": _hsv(f["shirt_hue"], 0.35, 0.55),
        "lips": skin * 0.3 + np.array([150.0, 35, 45]) * 0.7,
    }


# ----------------------------------------------------------------------------------------
# Geometry (unit square, y down) and drawing

def _geometry(f: Factors) -> dict:
    """Per-face positions and sizes in units of the image side, [N] float each."""
    s, yaw = f["face_scale"].astype(np.float64), f["yaw"].astype(np.float64)
    cx, cy = 0.5 + f["face_dx"], 0.5 + f["face_dy"]
    grin = np.clip((f["smile"] - 0.5) * 2, 0, 1)
    frown = np.clip((0.5 - f["smile"]) * 2, 0, 1)
    return {
        "s": s, "yaw": yaw, "cx": cx, "cy": cy,
        "rw": 0.25 * s * (1 - 0.1 * np.abs(yaw)), "rh": 0.31 * s,
        "fcx": cx - 0.025 * yaw * s,                   # outline moves against the turn
        "fx": cx + 0.1 * yaw * s,                     # features move with it
        "gap": 0.095 * s * (1 - 0.2 * np.abs(yaw)),   # half distance between the eyes
        "mw": 0.085 * s * (1 + 0.4 * grin) * (1 - 0.2 * np.abs(yaw)),   # mouth half width
        "grey": _smoothstep(f["age"], 0.35, 0.85),
        "grin": grin, "frown": frown,
    }


def _box(x, y, rx, ry, S):
    return [(x - rx) * S, (y - ry) * S, (x + rx) * S, (y + ry) * S]


def _width(w, S):
    return max(1, int(round(w * S)))


def _draw_head(d: ImageDraw.ImageDraw, g: dict, c: dict, S: int) -> None:
    cx, cy, fcx, rw, rh, s, yaw = g["cx"], g["cy"], g["fcx"], g["rw"], g["rh"], g["s"], g["yaw"]
    d.ellipse(_box(cx, cy + 0.62, 0.4 * s, 0.22, S), fill=c["shirt"])           # shoulders
    long = g["hair_length"]
    if long > 0.15:                                                              # hair behind
        d.rounded_rectangle([(fcx - rw * 1.16) * S, (cy - rh * 0.6) * S, (fcx + rw * 1.16) * S,
                             (cy + rh * (0.1 + 0.9 * long)) * S], radius=0.08 * S,
                            fill=c["hair"])
    d.rectangle([(cx - 0.075 * s) * S, (cy + rh * 0.7) * S, (cx + 0.075 * s) * S,
                 (cy + rh + 0.14) * S], fill=c["shade"])                         # neck
    for side in (-1, 1):                                                         # ears
        ex = fcx + side * rw * 0.98 - 0.05 * yaw * s
        d.ellipse(_box(ex, cy - 0.01, 0.04 * s, 0.065 * s, S), fill=c["shade"])
    d.ellipse(_box(fcx, cy, rw, rh, S), fill=c["skin"])                          # face
    top = cy - rh * 1.13
    cap = rh * (0.5 - 0.3 * g["grey"])                                           # recedes
    hcx = fcx - 0.03 * yaw * s
    tilt = 14 * g["hair_part"]
    d.chord([(hcx - rw * 1.1) * S, top * S, (hcx + rw * 1.1) * S, (top + 2 * cap) * S],
            180 + tilt, 360 + tilt, fill=c["hair"])
    if abs(yaw) > 0.1:                                   # hair on the back of the head shows
        bx = fcx - math.copysign(rw * 0.88, yaw)
        d.ellipse(_box(bx, cy - rh * 0.45, rw * 0.28 * abs(yaw), rh * 0.5, S), fill=c["hair"])


def _draw_lines(d: ImageDraw.ImageDraw, g: dict, c: dict, S: int) -> None:
    """Age lines: forehead lines and nasolabial folds; invisible when young."""
    if g["grey"] < 0.05:
        return
    fx, cy, s, rh = g["fx"], g["cy"], g["s"], g["rh"]
    w = _width(0.022 * s, S)
    for k in (0.5, 0.62):
        y = (cy - rh * k) * S
        d.line([(fx - 0.09 * s) * S, y, (fx + 0.09 * s) * S, y], fill=c["line"], width=w)
    for side in (-1, 1):
        d.line([((fx + side * 0.065 * s) * S, (cy + 0.05 * s) * S),
                ((fx + side * 0.105 * s) * S, (cy + 0.15 * s) * S)], fill=c["line"], width=w)


def _draw_eyes(d: ImageDraw.ImageDraw, g: dict, c: dict, S: int) -> None:
    fx, cy, s, yaw, gap = g["fx"], g["cy"] - 0.045 * g["s"], g["s"], g["yaw"], g["gap"]
    if g["eyeglasses"] > 0.5:                            # tinted lenses under the eyes
        for side in (-1, 1):
            rxs = 0.075 * s * (1 - 0.3 * max(side * yaw, 0))
            d.ellipse(_box(fx + side * gap, cy, rxs, 0.062 * s, S), fill=c["lens"])
    for side in (-1, 1):
        ex = fx + side * gap
        rx = 0.042 * s * (1 - 0.35 * max(side * yaw, 0))         # the far eye narrows
        d.ellipse(_box(ex, cy, rx, 0.026 * s, S), fill=(245, 245, 245))
        d.ellipse(_box(ex + 0.014 * yaw * s, cy, 0.022 * s, 0.024 * s, S), fill=(30, 25, 35))
        bx = ex + 0.005 * yaw * s                                          # eyebrow
        d.line([((bx - 0.05 * s) * S, (cy - 0.075 * s) * S),
                ((bx + 0.05 * s) * S, (cy - 0.075 * s - side * 0.008 * s) * S)],
               fill=c["brow"], width=_width(0.032 * s, S))
    if g["eyeglasses"] > 0.5:
        _draw_glasses(d, g, cy, S)


def _draw_glasses(d: ImageDraw.ImageDraw, g: dict, cy: float, S: int) -> None:
    fx, s, yaw, gap, fcx, rw = g["fx"], g["s"], g["yaw"], g["gap"], g["fcx"], g["rw"]
    dark, w = (22, 22, 28), _width(0.036 * s, S)
    rx, ry = 0.075 * s, 0.062 * s
    for side in (-1, 1):
        ex = fx + side * gap
        rxs = rx * (1 - 0.3 * max(side * yaw, 0))
        d.ellipse(_box(ex, cy, rxs, ry, S), outline=dark, width=w)
        edge = fcx + side * rw * 0.97                                      # temple arm
        d.line([((ex + side * rxs) * S, cy * S), (edge * S, (cy - 0.01) * S)], fill=dark, width=w)
    d.line([((fx - gap + rx * 0.8) * S, cy * S), ((fx + gap - rx * 0.8) * S, cy * S)],
           fill=dark, width=w)                                             # bridge


def _draw_nose_mouth(d: ImageDraw.ImageDraw, g: dict, c: dict, S: int) -> None:
    fx, cy, s, yaw = g["fx"], g["cy"], g["s"], g["yaw"]
    tip = fx + 0.06 * yaw * s                            # the nose points along the turn
    lo, hi, y = min(fx, tip) - 0.03 * s, max(fx, tip) + 0.03 * s, (cy + 0.07 * s) * S
    d.polygon([(fx * S, (cy - 0.02 * s) * S), (hi * S, y), (lo * S, y)], fill=c["nose"])
    mx, my, mw = fx, cy + 0.15 * s, g["mw"]
    lip = _width(0.03 * s, S)
    if g["grin"] > 0.04:                                 # open smile: lower half-ellipse
        oh = 0.14 * s * g["grin"] ** 0.5                 # opens quickly past the threshold
        d.chord(_box(mx, my, mw, oh, S), 0, 180, fill=(85, 18, 28))
        d.rectangle([(mx - mw * 0.75) * S, my * S, (mx + mw * 0.75) * S, (my + oh * 0.45) * S],
                    fill=(250, 250, 245))                    # teeth: contrast on any skin
        d.line([((mx - mw) * S, my * S), ((mx + mw) * S, my * S)], fill=c["lips"], width=lip)
    elif g["frown"] > 0.1:                               # down-curved closed mouth
        curve = 0.045 * s * g["frown"]
        d.arc([(mx - mw) * S, my * S, (mx + mw) * S, (my + 2 * curve) * S], 180, 360,
              fill=c["lips"], width=lip)
    else:
        d.line([((mx - mw) * S, my * S), ((mx + mw) * S, my * S)], fill=c["lips"], width=lip)


def _draw_face(g: dict, c: dict, res: int) -> np.ndarray:
    S = res * SUPERSAMPLE
    img = Image.new("RGB", (S, S), c["bg"])
    d = ImageDraw.Draw(img)
    _draw_head(d, g, c, S)
    _draw_lines(d, g, c, S)
    _draw_eyes(d, g, c, S)
    _draw_nose_mouth(d, g, c, S)
    return np.asarray(img.reduce(SUPERSAMPLE))                                 # [H, W, 3]


def render(factors: Factors, resolution: int = 32) -> np.ndarray:
    """Factors (a batch, or scalars for one face) -> [N, H, W, 3] uint8 images."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
    f = as_batch(factors)
    n = len(f["age"])
    geo = {k: v.tolist() for k, v in _geometry(f).items()}
    geo.update({k: f[k].tolist() for k in ("eyeglasses", "hair_length", "hair_part")})
    col = {k: [tuple(p) for p in np.round(v).astype(int).tolist()] for k, v in _colours(f).items()}
    out = np.empty((n, resolution, resolution, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = _draw_face({k: v[i] for k, v in geo.items()},
                            {k: v[i] for k, v in col.items()}, resolution)
    return out


def _render_chunk(args):
    return render(*args)


def render_parallel(factors: Factors, resolution: int = 32, workers: int = 2) -> np.ndarray:
    """`render` split over `workers` processes; same result, row for row."""
    f = as_batch(factors)
    n = len(f["age"])
    if workers <= 1 or n < 256:
        return render(f, resolution)
    from concurrent.futures import ProcessPoolExecutor
    bounds = np.linspace(0, n, workers * 4 + 1).astype(int)
    chunks = [(take(f, slice(a, b)), resolution) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_render_chunk, chunks)))


def render_dataset(n: int, seed: int, resolution: int = 32, start: int = 0) -> tuple:
    """Rows start .. start+n-1 of the toy world: ([N, H, W, 3] uint8 images, factors)."""
    f = sample_factors(n, seed, start)
    return render(f, resolution), f


# ----------------------------------------------------------------------------------------
# Parquet: the DESIGN.md image layout, usable as training data and as "real" images

def image_ids(seed: int, start: int, n: int) -> list:
    return [f"toy-s{seed}-{i:09d}" for i in range(start, start + n)]


def dataset_table(n: int, seed: int, resolution: int = 32, start: int = 0):
    """One pa.Table of rows start .. start+n-1: image_id, image {bytes, path}, factors
    (float32), labels (bool)."""
    from gankit.data import image_column, make_table
    from gankit.images import encode_png
    images, f = render_dataset(n, seed, resolution, start)
    ids = image_ids(seed, start, n)
    cols = {"image_id": np.array(ids, dtype=object),
            "image": image_column([encode_png(im) for im in images], [i + ".png" for i in ids])}
    cols.update({name: f[name] for name in FACTOR_NAMES})
    cols.update(labels(f))
    meta = {"gankit.toyfaces": f'{{"seed": {seed}, "resolution": {resolution}}}'}
    return make_table(cols, id_column="image_id", metadata=meta)


def write_parquet(path_or_url: str, n: int, seed: int, resolution: int = 32,
                  rows_per_file: int = 10_000) -> list:
    """Write n toy faces as part files `part-00000.parquet`, ... under a directory (local or
    fsspec URL). Each part is written to a temporary name and renamed, and parts already
    present are skipped, so a rerun finishes an interrupted write. Returns the part URLs."""
    import fsspec
    import pyarrow.parquet as pq
    if n < 1 or rows_per_file < 1:
        raise ValueError(f"n and rows_per_file must be >= 1, got {n}, {rows_per_file}")
    fs, root = fsspec.core.url_to_fs(str(path_or_url))
    fs.makedirs(root, exist_ok=True)
    parts = []
    for k, start in enumerate(range(0, n, rows_per_file)):
        final = f"{root.rstrip('/')}/part-{k:05d}.parquet"
        parts.append(final)
        if fs.exists(final):
            continue
        table = dataset_table(min(rows_per_file, n - start), seed, resolution, start)
        tmp = final + ".tmp"
        with fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh)
        fs.mv(tmp, final)
    return [fs.unstrip_protocol(p) for p in parts]


def read_parquet_images(path_or_url: str) -> tuple:
    """A part file or a directory of them -> ([N, H, W, 3] uint8 images, pa.Table)."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq
    from gankit.data import image_bytes
    from gankit.images import decode_image
    fs, root = fsspec.core.url_to_fs(str(path_or_url))
    files = sorted(fs.glob(root.rstrip("/") + "/*.parquet")) if fs.isdir(root) else [root]
    if not files:
        raise ValueError(f"path: no .parquet files under {path_or_url}")
    tables = []
    for p in files:
        with fs.open(p, "rb") as fh:
            tables.append(pq.read_table(fh))
    table = pa.concat_tables(tables)
    images = np.stack([decode_image(b) for b in image_bytes(table.column("image"))])
    return images, table
