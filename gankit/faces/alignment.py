"""Faces in real photos: dlib detection and 68-point landmarks, the FFHQ alignment of NVIDIA's
ffhq-dataset, pasting an edited aligned face back into its photo, and identity descriptors.

StyleGAN face generators were trained on FFHQ-aligned crops, so a photo must be aligned the
same way before inversion (e4e and PTI do this too). The recipe, from the 68 landmarks:

    eye_left, eye_right = mean of points 36-41, 42-47     (the image's left and right eye)
    mouth_left, mouth_right = points 48, 54
    eye_to_eye = eye_right - eye_left;  eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - rot90(eye_to_mouth), normalised, scaled by
        max(|eye_to_eye| * 2.0, |eye_to_mouth| * 1.8)
    y = rot90(x);  c = eye_avg + 0.1 * eye_to_mouth
    quad = [c - x - y, c - x + y, c + x + y, c + x - y]   (top-left, bottom-left,
                                                            bottom-right, top-right)

then the photo is shrunk when the quad is much larger than the output, cropped around the
quad, padded by reflection with a blurred border fading to the median colour where the quad
leaves the photo, warped so the quad becomes a square of `transform_size` pixels, and
resized to the requested resolution. The quad, in the photo's pixel coordinates, is the
whole transform: `paste_back` inverts it.

Identity: the 128-d descriptor of dlib's face recognition ResNet. dlib's own rule is that
two faces whose descriptors are less than 0.6 apart (Euclidean) are the same person; we
report that distance (`identity_distance`) and the cosine similarity of the descriptors
(`identity_similarity`, 1 = same direction), the form e4e and PTI use with ArcFace.

Coordinates: landmarks and quads are (x, y) in the photo's pixels, pixel (i, j)'s centre at
(i, j) as dlib gives them. Images are RGB uint8 [H, W, 3] (gankit.images.decode_image's).

dlib and its models come from the optional extra `pip install 'gankit[faces]'` (dlib-bin
and face-recognition-models); nothing is downloaded at run time. dlib is imported only here,
only when a function needs it.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

INSTALL_HINT = "pip install 'gankit[faces]'"
FACE_CHOICES = ("largest", "all")
DETECTORS = ("hog", "mmod")

# Files that face-recognition-models ships in its `models/` folder.
MODEL_FILES = {
    "landmarks": "shape_predictor_68_face_landmarks.dat",     # 68-point shape predictor
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",  # 128-d descriptor ResNet
    "mmod": "mmod_human_face_detector.dat",                    # CNN (MMOD) face detector
}

# HOG boxes come from an image pyramid whose levels differ by 6/5 in side: boxes whose areas
# are within this ratio of the largest one are the same size to the detector, and the most
# confident of them is chosen (a textured patch can get a box one pixel larger than a face).
SAME_SIZE_AREA_RATIO = 0.8


class NoFaceError(ValueError):
    """The detector found no face in a photo."""


@dataclass
class Face:
    box: tuple                 # (left, top, right, bottom) of the detection, pixels
    score: float               # detector confidence (HOG: SVM margin; MMOD: its confidence)
    landmarks: np.ndarray      # [68, 2] float32 (x, y), iBUG 300-W order


@dataclass
class AlignedFace:
    image: np.ndarray          # [R, R, 3] uint8, FFHQ-aligned
    quad: np.ndarray           # [4, 2] float32: the square's corners in the photo
    face: Face                 # the detection it came from


# ----------------------------------------------------------------------------------------
# dlib and its model files


def import_dlib():
    """dlib, or one sentence naming the extra that installs it."""
    try:
        import dlib
    except ImportError:
        raise ImportError(f"face alignment and identity need dlib: install them with "
                          f"{INSTALL_HINT}") from None
    return dlib


def model_path(kind: str) -> str:
    """Path of one of face-recognition-models' files (MODEL_FILES). Found without importing
    the package, whose __init__ needs pkg_resources (gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"face alignment and identity need the dlib models of "
                          f"face-recognition-models: install them with {INSTALL_HINT}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", MODEL_FILES[kind])
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models "
                                f"({INSTALL_HINT})")
    return path


_MODELS: dict = {}   # per process: each model file is read once (the 68-point one is 100 MB)


def dlib_model(kind: str):
    """The detector ('hog', 'mmod'), shape predictor ('landmarks') or ResNet ('recognition')."""
    if kind not in _MODELS:
        dlib = import_dlib()
        if kind == "hog":
            _MODELS[kind] = dlib.get_frontal_face_detector()
        elif kind == "mmod":
            _MODELS[kind] = dlib.cnn_face_detection_model_v1(model_path("mmod"))
        elif kind == "landmarks":
            _MODELS[kind] = dlib.shape_predictor(model_path("landmarks"))
        elif kind == "recognition":
            _MODELS[kind] = dlib.face_recognition_model_v1(model_path("recognition"))
        else:
            raise ValueError(f"unknown dlib model {kind!r}")
    return _MODELS[kind]


# ----------------------------------------------------------------------------------------
# Detection and landmarks


def check_installed() -> None:
    """Fail before any work, in one sentence (ValueError), when dlib or its model files
    are not installed."""
    try:
        import_dlib()
        model_path("landmarks")
    except ImportError as e:
        raise ValueError(str(e)) from None


def check_photo(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"photo: expected RGB uint8 [H, W, 3], got {image.dtype} "
                         f"shape {list(image.shape)}")
    return np.ascontiguousarray(image)                 # dlib reads C-ordered pixels only


def detect_faces(image: np.ndarray, upsample: int = 1, detector: str = "hog") -> list:
    """Every face dlib finds in an RGB photo, with its 68 landmarks, most confident first.
    `upsample` doubles the photo that many times first (finds faces down to ~40 px)."""
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    image = check_photo(image)
    if detector == "hog":
        rects, scores, _ = dlib_model("hog").run(image, upsample, 0.0)
    else:
        found = dlib_model("mmod")(image, upsample)
        rects, scores = [d.rect for d in found], [d.confidence for d in found]
    predictor = dlib_model("landmarks")
    faces = []
    for rect, score in zip(rects, scores):
        shape = predictor(image, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)  # [68, 2]
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        faces.append(Face(box, float(score), points))
    return sorted(faces, key=lambda f: -f.score)


def box_area(face: Face) -> int:
    left, top, right, bottom = face.box
    return (right - left + 1) * (bottom - top + 1)


def choose_faces(faces: list, rule: str = "largest") -> list:
    """'all': every face, largest first; 'largest': the largest one (among boxes of the same
    pyramid size, SAME_SIZE_AREA_RATIO, the most confident). Raises NoFaceError if none."""
    if rule not in FACE_CHOICES:
        raise ValueError(f"faces must be one of {', '.join(FACE_CHOICES)}, got {rule!r}")
    if not faces:
        raise NoFaceError("no face found in the photo (dlib's detector found none)")
    if rule == "all":
        return sorted(faces, key=lambda f: -box_area(f))
    top = max(box_area(f) for f in faces)
    same_size = [f for f in faces if box_area(f) >= SAME_SIZE_AREA_RATIO * top]
    return [max(same_size, key=lambda f: f.score)]


# ----------------------------------------------------------------------------------------
# The FFHQ quad and the alignment


def rot90(v: np.ndarray) -> np.ndarray:
    """(x, y) -> (-y, x): a quarter turn (clockwise on screen, where y points down)."""
    return np.array([-v[1], v[0]], dtype=np.float64)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """[68, 2] landmarks -> [4, 2] float64 quad (top-left, bottom-left, bottom-right,
    top-right), the recipe in this module's docstring."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks: expected [68, 2], got shape {list(lm.shape)}")
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - rot90(eye_to_mouth)        # leans on both: robust to a tilted mouth
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = rot90(x)
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])      # [4, 2]


def quad_size(quad: np.ndarray) -> float:
    return float(np.hypot(*(quad[3] - quad[0])))     # the side of the square


def align_quad(image: np.ndarray, quad: np.ndarray, resolution: int,
               transform_size: Optional[int] = None, padding: bool = True) -> np.ndarray:
    """Warp the square `quad` of an RGB photo to [resolution, resolution, 3] uint8.
    It is sampled at `transform_size` (default 4 * resolution: NVIDIA's 4096 for 1024 px),
    then resized down antialiased."""
    image = check_photo(image)
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    img = Image.fromarray(image)
    q = np.asarray(quad, dtype=np.float64) + 0.5    # PIL's coordinates: pixel centres at +0.5
    img, q = _shrink(img, q, resolution)
    img, q = _crop(img, q)
    if padding:
        img, q = _pad(img, q)
    size = transform_size or 4 * resolution
    out = img.transform((size, size), Image.Transform.QUAD, tuple(q.flatten()),
                        Image.Resampling.BILINEAR)
    if size != resolution:
        out = out.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(out)                                              # [R, R, 3]


def _shrink(img: Image.Image, q: np.ndarray, resolution: int) -> tuple:
    """Downscale (antialiased) by an integer factor when the quad is 4x or more the output,
    so the bilinear warp does not alias. The quad follows the exact scale of the resize."""
    shrink = int(math.floor(quad_size(q) / resolution * 0.5))
    if shrink <= 1:
        return img, q
    w, h = img.size
    size = (max(1, round(w / shrink)), max(1, round(h / shrink)))
    return img.resize(size, Image.Resampling.LANCZOS), q * (np.array(size) / (w, h))


def _crop(img: Image.Image, q: np.ndarray) -> tuple:
    """Keep the quad's bounding box plus a border of 10% of its side (at least 3 px)."""
    border = max(int(round(quad_size(q) * 0.1)), 3)
    w, h = img.size
    left, top = (max(int(math.floor(v)) - border, 0) for v in q.min(0))
    right, bottom = int(math.ceil(q[:, 0].max())) + border, int(math.ceil(q[:, 1].max())) + border
    right, bottom = min(right, w), min(bottom, h)
    if (right - left, bottom - top) == (w, h):
        return img, q
    return img.crop((left, top, right, bottom)), q - (left, top)


def _pad(img: Image.Image, q: np.ndarray) -> tuple:
    """Where the quad leaves the photo, extend it by reflection; the added band is blurred
    (sigma 2% of the quad) and fades towards the photo's median colour, so the generator
    sees no mirrored copy of the face, only a plausible background."""
    qsize, (w, h) = quad_size(q), img.size
    border = max(int(round(qsize * 0.1)), 3)
    lo, hi = np.floor(q.min(0)).astype(int), np.ceil(q.max(0)).astype(int)
    pad = np.maximum([border - lo[0], border - lo[1], hi[0] - w + border, hi[1] - h + border], 0)
    if pad.max() <= border - 4:                 # the quad stays inside the photo
        return img, q
    pad = np.maximum(pad, int(round(qsize * 0.3)))                      # left, top, right, bottom
    x = np.pad(np.asarray(img, dtype=np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)),
               mode="reflect")                                          # [H', W', 3]
    mask = _pad_mask(x.shape[0], x.shape[1], pad)                       # [H', W', 1]
    x = _blend_border(x, mask, blur=qsize * 0.02)
    out = Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    return out, q + pad[:2]


def _pad_mask(h: int, w: int, pad: np.ndarray) -> np.ndarray:
    """How far each pixel lies into the padding, 1 at the outer edge, 0 at the photo's edge,
    negative inside the photo: [h, w, 1] float32."""
    ys, xs = np.ogrid[:h, :w]
    ys, xs = ys.astype(np.float32), xs.astype(np.float32)
    along_x = 1 - np.minimum(xs / pad[0], (w - 1 - xs) / pad[2])        # [1, w]
    along_y = 1 - np.minimum(ys / pad[1], (h - 1 - ys) / pad[3])        # [h, 1]
    return np.maximum(along_x, along_y)[..., None]


def _blend_border(x: np.ndarray, mask: np.ndarray, blur: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter
    blurred = gaussian_filter(x, [blur, blur, 0])
    x = x + (blurred - x) * np.clip(mask * 3 + 1, 0, 1)   # blurred in the band, and a third
    median = np.median(x, axis=(0, 1))                    # of its width into the photo
    return x + (median - x) * np.clip(mask, 0, 1)


def align_faces(image: np.ndarray, resolution: int, faces: str = "largest",
                upsample: int = 1, detector: str = "hog") -> list:
    """Detect, choose (`faces`: 'largest' or 'all') and FFHQ-align the faces of an RGB photo:
    a list of AlignedFace. Raises NoFaceError when there is none."""
    chosen = choose_faces(detect_faces(image, upsample, detector), faces)
    out = []
    for face in chosen:
        quad = ffhq_quad(face.landmarks)
        out.append(AlignedFace(align_quad(image, quad, resolution), quad.astype(np.float32),
                               face))
    return out


# ----------------------------------------------------------------------------------------
# Paste-back
#
# An edited aligned face [R, R, 3] goes back into its photo through the inverse of its quad,
# blended by a weight in [0, 1] per photo pixel:
#   face    the convex hull of the jaw (landmarks 0-16) and brows (17-26), dilated by
#           `dilation`; the weight rises from 0 at the dilated edge to 1 over `feather`
#           inward, so only the face is replaced and the generator's background and hair,
#           which never match the photo's, stay out. Outside the dilated hull the weight is
#           exactly 0: those pixels are the photo's, bit for bit.
#   square  the whole aligned square, fading out over `feather` inside its edges.
# Both widths are fractions of the square's side in the photo, so they follow the face's size.

BLENDS = ("face", "square")
FACE_OUTLINE = slice(0, 27)          # jaw 0-16 and brows 17-26 of the 68 (iBUG 300-W order)


@dataclass(frozen=True)
class Blend:
    """How a pasted face meets its photo (widths: fractions of the aligned square's side)."""
    kind: str = "face"       # face: the landmarks' jaw-and-brows hull; square: the square
    dilation: float = 0.05   # face: how far the mask reaches past the hull
    feather: float = 0.1     # the weight fades from 1 to 0 over this width, inside the edge

    def __post_init__(self):
        if self.kind not in BLENDS:
            raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {self.kind!r}")
        if not 0 <= self.dilation <= 0.5:
            raise ValueError(f"dilation must be in [0, 0.5], got {self.dilation}")
        if not 0 <= self.feather <= 0.5:
            raise ValueError(f"feather must be in [0, 0.5], got {self.feather}")


def aligned_to_photo(quad: np.ndarray, size: int) -> tuple:
    """The affine map from an aligned image's continuous coordinates (0..size) to the
    photo's: (origin [2], matrix [2, 2]) with p = origin + matrix @ (u, v)."""
    q = np.asarray(quad, dtype=np.float64) + 0.5
    matrix = np.stack([q[3] - q[0], q[1] - q[0]], axis=1) / size     # columns: u and v axes
    return q[0], matrix


def paste_back(photo: np.ndarray, aligned: np.ndarray, quad: np.ndarray,
               landmarks: Optional[np.ndarray] = None, blend: Blend = Blend()) -> np.ndarray:
    """Composite an (edited) aligned face [R, R, 3] back into its photo [H, W, 3] (both
    uint8) where `quad` [4, 2] came from; the face blend needs the face's `landmarks`
    [68, 2] in the photo. Returns a new [H, W, 3] uint8 photo."""
    return paste_faces(photo, [(aligned, quad, landmarks)], blend)


def paste_faces(photo: np.ndarray, faces: list, blend: Blend = Blend()) -> np.ndarray:
    """Every (aligned [R, R, 3], quad [4, 2], landmarks [68, 2] or None) of `faces` pasted
    into one copy of `photo`, in order (a later face covers an earlier one where they
    overlap). Pixels that no face's weight reaches are the photo's exactly."""
    out = check_photo(photo).copy()
    for aligned, quad, landmarks in faces:
        _paste_into(out, check_photo(aligned), np.asarray(quad, dtype=np.float64),
                    landmarks, blend)
    return out


def _paste_into(photo: np.ndarray, aligned: np.ndarray, quad: np.ndarray, landmarks,
                blend: Blend) -> None:
    """Blend one face into `photo` in place, inside the box its weight can reach only."""
    if blend.kind == "face" and landmarks is None:
        raise ValueError("the face blend needs the face's 68 landmarks (or blend 'square')")
    side = quad_size(quad)
    if aligned.shape[0] > 1.5 * side:         # shrink first (antialiased): the warp samples
        r = max(1, int(round(side)))          # bilinearly and would alias a 1024 px face
        aligned = np.asarray(Image.fromarray(aligned).resize((r, r), Image.Resampling.LANCZOS))
    hull = face_hull(landmarks) if blend.kind == "face" else None
    box = _blend_box(quad, hull, blend.dilation * side, photo.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    warped = _warp_into(aligned, quad, box)                              # [h, w, 3]
    weight = _square_weight(quad, aligned.shape[0], box, blend)          # [h, w]
    if hull is not None:
        weight = np.minimum(weight, hull_weight(hull - (x0, y0), (y1 - y0, x1 - x0),
                                                blend.dilation * side, blend.feather * side))
    region = photo[y0:y1, x0:x1].astype(np.float32)
    mixed = region + (warped - region) * weight[..., None]     # weight 0: exactly the photo
    photo[y0:y1, x0:x1] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def face_hull(landmarks: np.ndarray) -> np.ndarray:
    """The convex hull of the jaw and brows: [K, 2] float64 vertices (x, y), in order."""
    from scipy.spatial import ConvexHull
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks: expected [68, 2], got shape {list(lm.shape)}")
    outline = lm[FACE_OUTLINE]                                           # [27, 2]
    return outline[ConvexHull(outline).vertices]


def hull_weight(hull: np.ndarray, hw: tuple, dilation: float, feather: float) -> np.ndarray:
    """The face blend's weight on an [h, w] pixel grid (pixel (i, j)'s centre at x=j, y=i,
    as the landmarks'): 0 beyond `dilation` px of the hull polygon [K, 2], rising to 1
    over `feather` px inward from there. [h, w] float32."""
    from scipy.ndimage import distance_transform_edt
    canvas = Image.new("L", (hw[1], hw[0]), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in hull], fill=1)
    inside = np.asarray(canvas, dtype=bool)                              # [h, w]
    if not inside.any():
        return np.zeros(hw, dtype=np.float32)
    mask = distance_transform_edt(~inside) <= dilation                   # the dilated hull
    if mask.all():
        return np.ones(hw, dtype=np.float32)
    depth = distance_transform_edt(mask)             # px to the nearest pixel outside it
    return np.clip(depth / max(feather, 1e-6), 0, 1).astype(np.float32)


def _blend_box(quad: np.ndarray, hull: Optional[np.ndarray], dilation: float,
               shape: tuple) -> Optional[tuple]:
    """(x0, y0, x1, y1): the photo pixels a face's weight can reach (the quad's bounds,
    and with a hull the dilated hull's), clipped to the photo; None when empty."""
    lo, hi = np.floor(quad.min(0)) - 1, np.ceil(quad.max(0)) + 2
    if hull is not None:
        margin = dilation + 2
        lo = np.maximum(lo, np.floor(hull.min(0) - margin))
        hi = np.minimum(hi, np.ceil(hull.max(0) + margin) + 1)
    x0, y0 = (int(max(v, 0)) for v in lo)
    x1, y1 = int(min(hi[0], shape[1])), int(min(hi[1], shape[0]))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _warp_into(aligned: np.ndarray, quad: np.ndarray, box: tuple) -> np.ndarray:
    """The aligned image warped into the photo's frame over `box`: [h, w, 3] float32."""
    x0, y0, x1, y1 = box
    origin, matrix = aligned_to_photo(quad, aligned.shape[0])
    inverse = np.linalg.inv(matrix)                                      # photo -> aligned
    shift = -inverse @ (origin - (x0, y0))          # box pixel (x, y) -> aligned (u, v)
    coeffs = (*inverse[0], shift[0], *inverse[1], shift[1])
    warped = Image.fromarray(aligned).transform((x1 - x0, y1 - y0), Image.Transform.AFFINE,
                                                coeffs, Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.float32)


def _square_weight(quad: np.ndarray, size: int, box: tuple, blend: Blend) -> np.ndarray:
    """1 inside the aligned square, 0 outside, at each pixel centre of `box`: [h, w]
    float32. The square blend ramps linearly over `feather * size` inside the edges; the
    face blend only needs the square's bounds (beyond them the warp has no pixels)."""
    x0, y0, x1, y1 = box
    origin, matrix = aligned_to_photo(quad, size)
    inverse = np.linalg.inv(matrix)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    u = inverse[0, 0] * (xs - origin[0]) + inverse[0, 1] * (ys - origin[1])
    v = inverse[1, 0] * (xs - origin[0]) + inverse[1, 1] * (ys - origin[1])
    inside = np.minimum(np.minimum(u, size - u), np.minimum(v, size - v))   # [h, w] px
    ramp = max(blend.feather * size, 1e-6) if blend.kind == "square" else 1e-6
    return np.clip(inside / ramp, 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Identity


def face_descriptors(images, landmarks=None, upsample: int = 1) -> np.ndarray:
    """128-d descriptors of dlib's face recognition ResNet, [N, 128] float32, for RGB
    uint8 images. `landmarks` (a [68, 2] array per image, or None where unknown) skips the
    detector: pass an aligned input's landmarks for its reconstruction and edits, which
    share its frame and which a detector may miss. Rows with no face are NaN."""
    dlib = import_dlib()
    net = dlib_model("recognition")
    landmarks = [None] * len(images) if landmarks is None else list(landmarks)
    if len(landmarks) != len(images):
        raise ValueError(f"landmarks: {len(landmarks)} entries for {len(images)} images")
    out = np.full((len(images), 128), np.nan, dtype=np.float32)
    for i, (image, lm) in enumerate(zip(images, landmarks)):
        image = check_photo(image)
        if lm is None:
            found = detect_faces(image, upsample)
            if not found:
                continue
            lm = choose_faces(found)[0].landmarks
        out[i] = np.asarray(net.compute_face_descriptor(image, _shape(dlib, lm)))
    return out


def _shape(dlib, landmarks: np.ndarray):
    """[68, 2] landmarks -> dlib.full_object_detection (its box: the points' bounds)."""
    pts = np.rint(np.asarray(landmarks, dtype=np.float64)).astype(int)
    rect = dlib.rectangle(*(int(v) for v in (*pts.min(0), *pts.max(0))))
    return dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])


def identity_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of descriptors [N, 128] row by row, [N]; dlib's rule: < 0.6 is
    the same person. NaN where either has no face."""
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)


def identity_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of descriptors [N, 128] row by row, [N] in [-1, 1] (1: the same
    direction). NaN where either has no face."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
