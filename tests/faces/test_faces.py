"""gankit.faces.alignment on a real photograph: scikit-image's astronaut.png (one real face;
dlib's HOG detector with one upsampling also fires on a patch of the space suit lower down)."""
from __future__ import annotations

import importlib.util
import io
import os
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter

from gankit.faces import alignment as faces
from gankit.images import decode_image

pytest.importorskip("dlib", reason="dlib is not installed: pip install 'gankit[faces]'")

R = 256   # aligned resolution of most tests (the photo's face quad is ~175 px)


def skimage_photo(name: str) -> bytes:
    """The bytes of a photo scikit-image ships (read as a file, decoded by gankit)."""
    root = importlib.util.find_spec("skimage").submodule_search_locations[0]
    with open(os.path.join(root, "data", name), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def astronaut():
    return decode_image(skimage_photo("astronaut.png"))                # [512, 512, 3]


@pytest.fixture(scope="module")
def detected(astronaut):
    return faces.detect_faces(astronaut, upsample=1)


@pytest.fixture(scope="module")
def face(detected):
    return faces.choose_faces(detected, "largest")[0]


def frame(size: int) -> np.ndarray:
    """The quad an aligned image of `size` px has in its own pixel coordinates."""
    return np.array([[0, 0], [0, size], [size, size], [size, 0]], dtype=np.float64) - 0.5


def test_largest_is_the_real_face_not_the_suit_patch(detected, face):
    assert len(detected) == 2                         # the face and the patch on the suit
    assert len(faces.choose_faces(detected, "all")) == 2
    left, top, right, bottom = face.box
    assert bottom < 200 and left > 150 and right < 300      # the head, not the suit
    assert face.score == max(f.score for f in detected)


def test_landmarks_sit_on_eyes_nose_mouth(face):
    lm = face.landmarks                                                # [68, 2]
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    eyes, nose_tip, mouth = lm[36:48].mean(0), lm[30], lm[48:68].mean(0)
    assert eyes[1] < nose_tip[1] < mouth[1]                            # top to bottom
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()                   # image-left eye first
    left, top, right, bottom = face.box
    margin = 0.15 * (right - left)
    assert np.all((lm[:, 0] > left - margin) & (lm[:, 0] < right + margin))
    assert np.all((lm[:, 1] > top - margin) & (lm[:, 1] < bottom + margin))


def test_alignment_puts_the_face_where_ffhq_does(astronaut, face):
    quad = faces.ffhq_quad(face.landmarks)
    aligned = faces.align_quad(astronaut, quad, R)
    assert aligned.shape == (R, R, 3) and aligned.dtype == np.uint8
    again = faces.choose_faces(faces.detect_faces(aligned))[0]
    # aligning is idempotent: the quad of the re-detected landmarks is the whole frame
    assert np.abs(faces.ffhq_quad(again.landmarks) - frame(R)).max() < 0.03 * R
    eye_left, eye_right = again.landmarks[36:42].mean(0), again.landmarks[42:48].mean(0)
    assert abs(eye_left[1] - eye_right[1]) < 0.02 * R                  # level
    assert abs((eye_left[0] + eye_right[0]) / 2 - R / 2) < 0.02 * R    # centred
    assert abs(np.hypot(*(eye_right - eye_left)) - R / 4) < 0.03 * R   # x = 2 |eye_to_eye|


def test_quad_of_the_whole_photo_is_the_identity(astronaut):
    # pins the coordinate convention: pixel centres at integers, as dlib's landmarks
    out = faces.align_quad(astronaut, frame(512), 512, transform_size=512, padding=False)
    np.testing.assert_array_equal(out, astronaut)


def test_padding_fills_outside_the_photo_with_a_blurred_border(astronaut, face):
    photo = np.ascontiguousarray(astronaut[70:])        # the quad now leaves it at the top
    quad = faces.ffhq_quad(face.landmarks) - (0, 70)
    assert quad[:, 1].min() < -20
    bare = faces.align_quad(photo, quad, R, padding=False)
    padded = faces.align_quad(photo, quad, R)
    band = slice(0, R // 16)                            # rows that lie above the photo
    assert bare[band].max() == 0                        # PIL fills with black
    assert padded[band].min() > 0
    grad = np.abs(np.diff(padded.astype(np.float32), axis=1))
    assert grad[band].mean() < 0.5 * grad[R // 4: 3 * R // 4].mean()  # smooth, not a mirror
    assert len(faces.detect_faces(padded)) >= 1


@pytest.mark.parametrize("blend", faces.BLENDS)
def test_paste_back_of_the_unedited_face_restores_the_photo(astronaut, face, blend):
    aligned = faces.align_faces(astronaut, R)[0]
    np.testing.assert_allclose(aligned.quad, faces.ffhq_quad(face.landmarks), atol=1e-4)
    back = faces.paste_back(astronaut, aligned.image, aligned.quad, face.landmarks,
                            faces.Blend(blend))
    left, top, right, bottom = face.box
    diff = np.abs(back.astype(np.int16) - astronaut)                   # [H, W, 3]
    assert diff[top:bottom, left:right].mean() < 4      # two bilinear resamplings' blur
    assert diff[300:].max() == 0                        # far from the quad: untouched


@pytest.mark.parametrize("blend", faces.BLENDS)
def test_paste_back_places_an_edit_inside_the_quad_only(astronaut, face, blend):
    aligned = faces.align_faces(astronaut, 1024)[0]     # larger than the face in the photo
    edited = 255 - aligned.image                        # an edit that shows everywhere
    back = faces.paste_back(astronaut, edited, aligned.quad, face.landmarks,
                            faces.Blend(blend)).astype(np.int16)
    cx, cy = face.landmarks[27:36].mean(0).astype(int)              # the nose
    centre = np.abs(back - (255 - astronaut.astype(np.int16)))[cy - 15:cy + 15, cx - 15:cx + 15]
    assert centre.mean() < 6                            # the edit, at its place
    assert np.abs(back - astronaut)[300:].max() == 0


def distance_to_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Euclidean distance of points [N, 2] to a convex polygon [K, 2] (0 inside): [N]."""
    a, b = polygon, np.roll(polygon, -1, axis=0)                       # edges a -> b
    ab, ap = b - a, points[:, None] - a                                # [K, 2], [N, K, 2]
    t = np.clip((ap * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)           # [N, K]
    to_edge = np.hypot(*np.moveaxis(ap - t[..., None] * ab, -1, 0)).min(1)
    cross = ab[:, 0] * ap[..., 1] - ab[:, 1] * ap[..., 0]              # [N, K]
    inside = (cross >= 0).all(1) | (cross <= 0).all(1)
    return np.where(inside, 0.0, to_edge)


def pixel_centres(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.stack([xs, ys], 1).astype(np.float64)                    # [N, 2] (x, y)


def test_face_blend_keeps_every_pixel_outside_the_dilated_hull(astronaut, face):
    aligned = faces.align_faces(astronaut, R)[0]
    edited = 255 - aligned.image                        # an edit that shows everywhere
    blend = faces.Blend("face", dilation=0.05, feather=0.1)
    back = faces.paste_back(astronaut, edited, aligned.quad, face.landmarks, blend)
    hull, side = faces.face_hull(face.landmarks), faces.quad_size(aligned.quad)
    changed = (back != astronaut).any(axis=2)                          # [H, W]
    far = distance_to_polygon(pixel_centres(changed), hull)
    assert changed.sum() > 1000
    assert far.max() <= blend.dilation * side + 1.5     # the raster's half pixel, and one more
    # inside the hull, deeper than the feather reaches, the photo is the edit's
    from scipy.ndimage import distance_transform_edt
    everywhere = pixel_centres(np.ones(changed.shape, bool))
    inside = (distance_to_polygon(everywhere, hull) == 0).reshape(changed.shape)
    deep = distance_transform_edt(inside) > (blend.feather - blend.dilation) * side + 2
    assert deep.sum() > 1000
    assert changed[deep].all()
    inverted = 255 - astronaut.astype(np.int16)
    assert np.abs(back.astype(np.int16) - inverted)[deep].mean() < 8   # two resamplings


def test_square_blend_reaches_past_the_hull_and_the_face_blend_does_not(astronaut, face):
    aligned = faces.align_faces(astronaut, R)[0]
    edited = 255 - aligned.image
    hull, side = faces.face_hull(face.landmarks), faces.quad_size(aligned.quad)
    square = faces.paste_back(astronaut, edited, aligned.quad, blend=faces.Blend("square"))
    changed = (square != astronaut).any(axis=2)
    far = distance_to_polygon(pixel_centres(changed), hull)
    assert far.max() > 0.2 * side                       # hair and background replaced too
    with pytest.raises(ValueError, match="landmarks"):
        faces.paste_back(astronaut, edited, aligned.quad)


def test_paste_faces_puts_each_face_in_one_photo(astronaut):
    pair = np.ascontiguousarray(np.concatenate([astronaut, astronaut[:, ::-1]], axis=1))
    found = [a for a in faces.align_faces(pair, 64, faces="all")
             if a.face.box[3] < 200]                    # the two heads, not the suit patches
    assert len(found) == 2
    back = faces.paste_faces(pair, [(255 - a.image, a.quad, a.face.landmarks) for a in found])
    changed = (back != pair).any(axis=2)
    for a in found:
        cx, cy = a.face.landmarks[27:36].mean(0).astype(int)          # the nose
        assert changed[cy - 5:cy + 5, cx - 5:cx + 5].all()
    assert not changed[300:].any()


def test_identity_same_photo_close_other_face_far(astronaut, detected, face):
    blurred = np.asarray(Image.fromarray(astronaut).filter(ImageFilter.GaussianBlur(1)))
    shifted = np.ascontiguousarray(np.roll(blurred, (5, 7), axis=(0, 1)))
    patch = next(f for f in detected if f is not face)                 # the suit's patch
    d = faces.face_descriptors([astronaut, shifted, astronaut],
                               [face.landmarks, None, patch.landmarks])  # [3, 128]
    assert d.shape == (3, 128) and np.isfinite(d).all()
    dist = faces.identity_distance(d[[0, 0]], d[[1, 2]])
    sim = faces.identity_similarity(d[[0, 0]], d[[1, 2]])
    assert dist[0] < 0.6 < dist[1]                      # dlib's same-person threshold
    assert sim[0] > 0.95 and sim[1] < sim[0]


def test_no_face_is_a_clear_error_and_a_nan_descriptor():
    coffee = decode_image(skimage_photo("coffee.png"))
    with pytest.raises(faces.NoFaceError, match="no face found"):
        faces.align_faces(coffee, R)
    assert np.isnan(faces.face_descriptors([coffee])).all()


def jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def converted_photos(astronaut) -> dict:
    """The astronaut as a camera or a scanner might store it: {name: bytes}."""
    img = Image.fromarray(astronaut)
    exif = Image.Exif()
    exif[0x0112] = 6                       # orientation: turn 90 degrees clockwise to view
    return {"exif": jpeg(img.transpose(Image.Transpose.ROTATE_90), exif=exif),
            "cmyk": jpeg(img.convert("CMYK")), "rgb16": png16(astronaut.astype(np.uint16) * 257)}


def png16(rgb: np.ndarray) -> bytes:
    """[H, W, 3] uint16 -> a 16-bit RGB PNG (Pillow writes 16-bit gray only)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))
    h, w, _ = rgb.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8),                 # filter 0 per row
                           rgb.astype(">u2").reshape(h, -1).view(np.uint8)], axis=1)
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)             # 16-bit, RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes())) + chunk(b"IEND", b""))


def test_exif_cmyk_and_16bit_photos_convert_and_align(astronaut, face):
    for name, data in converted_photos(astronaut).items():
        photo = decode_image(data)
        assert photo.shape == astronaut.shape, name
        if name == "rgb16":
            np.testing.assert_array_equal(photo, astronaut)    # the high byte, exactly
        found = faces.align_faces(photo, 64)[0]
        assert np.abs(np.array(found.face.box) - face.box).max() <= 8, name


def test_bad_arguments_raise_one_sentence():
    with pytest.raises(ValueError, match="landmarks"):
        faces.ffhq_quad(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="RGB uint8"):
        faces.detect_faces(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="faces must be one of"):
        faces.choose_faces([], "first")


def test_missing_dlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)      # what an environment without it sees
    with pytest.raises(ImportError, match=r"pip install 'gankit\[faces\]'"):
        faces.import_dlib()
