"""The toy world's renderer: a face (pillow, drawn at SUPERSAMPLE times the resolution, then
box-filtered) from a row of factors (gankit.toy.world).

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
"""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

from gankit.toy.world import Factors, as_batch, take

SUPERSAMPLE = 4          # draw at 4x the output resolution, then box-filter down
RESOLUTIONS = (32, 64, 128)


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
    bounds = np.linspace(0, n, workers * 4 + 1).astype(int)
    chunks = [(take(f, slice(a, b)), resolution) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_render_chunk, chunks)))
