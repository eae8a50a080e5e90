"""Identity preservation, the measure e4e and PTI report: how close the face in an
inversion's reconstruction (or an edit) is to the input's, by the descriptors of dlib's
face recognition ResNet (gankit.faces; e4e and PTI use ArcFace, not available here).

The landmarks are found once, on the reference (the aligned input), and reused for every
image in its frame: a reconstruction or an edit shares the input's geometry, and a detector
may miss a face the generator drew poorly, which would hide exactly the failures the
measure is for. Where the reference has no face, every score is NaN.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

# dlib's HOG detector finds faces down to about 80 px, 40 px after one doubling; an aligned
# face fills about half its image, so small images are doubled until they reach this side.
DETECT_SIDE = 128


def detect_upsample(side: int) -> int:
    """Doublings the detector needs on an aligned image `side` pixels wide."""
    return max(0, math.ceil(math.log2(DETECT_SIDE / max(side, 1))))


def reference_faces(images: np.ndarray) -> tuple:
    """Aligned inputs uint8 [N, R, R, 3] -> (descriptors [N, 128] float32, NaN where no
    face; landmarks: a [68, 2] array or None per image)."""
    from gankit import faces
    landmarks = []
    for image in images:
        found = faces.detect_faces(image, detect_upsample(image.shape[0]))
        landmarks.append(faces.choose_faces(found)[0].landmarks if found else None)
    return descriptors_at(images, landmarks), landmarks


def descriptors_at(images, landmarks: list, side: Optional[int] = None) -> np.ndarray:
    """Descriptors [N, 128] of images at known landmarks (None: NaN). `side`: the size the
    landmarks were found at, when the images are stored at another."""
    from gankit import faces
    out = np.full((len(images), 128), np.nan, dtype=np.float32)
    rows = [i for i, lm in enumerate(landmarks) if lm is not None]
    if not rows:
        return out
    scale = [1.0 if side is None else images[i].shape[0] / side for i in rows]
    out[rows] = faces.face_descriptors([images[i] for i in rows],
                                       [landmarks[i] * s for i, s in zip(rows, scale)])
    return out


def identity_scores(reference: np.ndarray, landmarks: list, images,
                    side: Optional[int] = None) -> tuple:
    """(identity_similarity [N], identity_distance [N]) float32 of images against their
    references' descriptors [N, 128], at the references' landmarks; NaN where no face."""
    from gankit import faces
    other = descriptors_at(images, landmarks, side)
    return (faces.identity_similarity(reference, other).astype(np.float32),
            faces.identity_distance(reference, other).astype(np.float32))
