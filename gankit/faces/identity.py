"""Identity preservation, the measure e4e, pSp, ReStyle and PTI report: how close the face in
an inversion's reconstruction (or an edit) is to the input's.

Two measures, named by a spec:

    'dlib'          the 128-d descriptor of dlib's face recognition ResNet
                    (gankit.faces.alignment), at landmarks found on the reference; no face
                    there: NaN
    'arcface:PATH'  ArcFace, the IR-SE50 of TreB1eN's InsightFace_Pytorch (weights in the
                    `model_ir_se50.pth` layout), on the aligned face's central crop resized
                    to 112, as pSp / e4e's identity loss feeds it: the papers' figures

Both give (identity_similarity: cosine, identity_distance: Euclidean) between descriptors;
dlib's own rule is distance < 0.6 for the same person, ArcFace's descriptors are unit vectors.

dlib's landmarks are found once, on the reference (the aligned input), and reused for every
image in its frame: a reconstruction or an edit shares the input's geometry, and a detector
may miss a face the generator drew poorly, which would hide exactly the failures the
measure is for.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np

# dlib's HOG detector finds faces down to about 80 px, 40 px after one doubling; an aligned
# face fills about half its image, so small images are doubled until they reach this side.
DETECT_SIDE = 128
ARCFACE = "arcface:"
IDENTITY_COLUMNS = ("identity_similarity", "identity_distance")     # NaN: no face (dlib)


def measure_spec(value: Union[bool, str, None]) -> Optional[str]:
    """A stage's `identity_metric` as a spec: True / 'dlib' -> 'dlib', 'arcface:PATH' as it
    is, False / None / '' -> None (no identity columns). Anything else: ValueError."""
    if value is True or value == "dlib":
        return "dlib"
    if value in (False, None, ""):
        return None
    if isinstance(value, str) and value.startswith(ARCFACE) and len(value) > len(ARCFACE):
        return value
    raise ValueError(f"{value!r} is not an identity measure: use 'dlib' or "
                     f"'arcface:PATH' (IR-SE50 weights, model_ir_se50.pth)")


def measure_name(spec: str) -> str:
    """What the report calls the measure: 'dlib' or 'arcface'."""
    return "arcface" if spec.startswith(ARCFACE) else "dlib"


def load_measure(spec: str, device: str = "cpu"):
    """The measure a spec names, its network loaded once (on `device` for ArcFace)."""
    if spec.startswith(ARCFACE):
        return ArcFaceIdentity(spec[len(ARCFACE):], device)
    return DlibIdentity()


def detect_upsample(side: int) -> int:
    """Doublings the detector needs on an aligned image `side` pixels wide."""
    return max(0, math.ceil(math.log2(DETECT_SIDE / max(side, 1))))


class DlibIdentity:
    """dlib's descriptor at landmarks found on the reference images."""

    name = "dlib"

    def locate(self, images: np.ndarray) -> list:
        """Aligned references uint8 [N, S, S, 3] -> a [68, 2] array or None per image."""
        from gankit.faces import alignment as faces
        found = [faces.detect_faces(image, detect_upsample(image.shape[0]))
                 for image in images]
        return [faces.choose_faces(f)[0].landmarks if f else None for f in found]

    def describe(self, images, where: list, side: Optional[int] = None) -> np.ndarray:
        """Descriptors [N, 128] of images at known landmarks (None: NaN). `side`: the size
        the landmarks were found at, when the images are stored at another."""
        from gankit.faces import alignment as faces
        out = np.full((len(images), 128), np.nan, dtype=np.float32)
        rows = [i for i, lm in enumerate(where) if lm is not None]
        if not rows:
            return out
        scale = [1.0 if side is None else images[i].shape[0] / side for i in rows]
        out[rows] = faces.face_descriptors([images[i] for i in rows],
                                           [where[i] * s for i, s in zip(rows, scale)])
        return out


class ArcFaceIdentity:
    """ArcFace (IR-SE50) embeddings of the aligned images' central crop; every aligned image
    is taken to show a face (no detector)."""

    name = "arcface"

    def __init__(self, path: str, device: str = "cpu"):
        from gankit.faces.identity_arcface import load_arcface
        self.net, self.device = load_arcface(path, device), device

    def locate(self, images: np.ndarray) -> list:
        return [True] * len(images)

    def describe(self, images, where: list, side: Optional[int] = None) -> np.ndarray:
        """Unit embeddings [N, 512] float32 of uint8 [H, W, 3] images."""
        from gankit.faces.identity_arcface import arcface_embeddings
        from gankit.images import from_uint8
        if not len(images):
            return np.zeros((0, 512), np.float32)
        x = from_uint8(np.stack(list(images))).to(self.device)           # [N, 3, H, W]
        return arcface_embeddings(self.net, x).cpu().numpy()


def scores(reference: np.ndarray, other: np.ndarray) -> tuple:
    """(identity_similarity [N], identity_distance [N]) float32 between descriptors."""
    from gankit.faces import alignment as faces
    return (faces.identity_similarity(reference, other).astype(np.float32),
            faces.identity_distance(reference, other).astype(np.float32))


def identity_scores(measure, reference: np.ndarray, where: list, images,
                    side: Optional[int] = None) -> tuple:
    """Scores of `images` against their references' descriptors [N, D], described at the
    references' geometry `where` (dlib: landmarks; NaN where no face)."""
    return scores(reference, measure.describe(images, where, side))
