import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from gankit import data
from gankit.images import (decode_image, encode_png, from_uint8, make_grid, save_png,
                           to_rgb, to_uint8, upscale)


def random_images(n=3, h=8, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ---- images ----------------------------------------------------------------------------

def test_uint8_round_trip_is_exact():
    u = random_images()
    x = from_uint8(u)
    assert x.shape == (3, 3, 8, 10) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(to_uint8(x), u)


def test_to_uint8_follows_nvidia_convention():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 1, 5)
    assert to_uint8(x).reshape(-1).tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError, match="images"):
        to_uint8(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="uint8"):
        from_uint8(np.zeros((1, 4, 4, 3), np.float32))


def test_png_round_trip():
    img = random_images(1, 17, 13)[0]
    data_ = encode_png(img)
    assert data_[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(decode_image(data_), img)


@pytest.mark.parametrize("garbage", [b"not an image at all", b"", encode_png(
    np.zeros((8, 8, 3), np.uint8))[:40]])
def test_decode_garbage_raises_clear_error(garbage):
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(garbage)


def test_grayscale_and_alpha_become_rgb():
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    buf = io.BytesIO()
    Image.fromarray(gray, "L").save(buf, format="PNG")
    rgb = decode_image(buf.getvalue())
    assert rgb.shape == (4, 4, 3) and np.array_equal(rgb[..., 1], gray)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)                    # opaque: kept
    rgba[0, 1] = (10, 20, 30, 0)                      # transparent: white
    out = to_rgb(rgba, "RGBA")
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="mode"):
        to_rgb(rgba, "CMYK")


def test_make_grid_layout():
    imgs = random_images(5, 4, 6)
    grid = make_grid(imgs, ncols=3, border=2)
    assert grid.shape == (2 * 6 + 2, 3 * 8 + 2, 3)
    np.testing.assert_array_equal(grid[2:6, 2:8], imgs[0])
    np.testing.assert_array_equal(grid[8:12, 10:16], imgs[4])
    assert np.all(grid[8:12, 18:24] == 255)           # the empty sixth cell
    assert upscale(grid, 4).shape == (56, 104, 3)


def test_save_png(tmp_path):
    img = random_images(1)[0]
    save_png(str(tmp_path / "a.png"), img)
    np.testing.assert_array_equal(decode_image((tmp_path / "a.png").read_bytes()), img)


# ---- parquet schema helpers -------------------------------------------------------------

def test_image_column_uses_the_hf_image_layout():
    pngs = [encode_png(im) for im in random_images(2)]
    col = data.image_column(pngs, ["a.png", "b.png"])
    assert col.type == data.IMAGE_TYPE
    assert str(col.type) == "struct<bytes: binary, path: string>"
    assert data.image_bytes(pa.chunked_array([col[:1], col[1:]])) == pngs
    with pytest.raises(ValueError, match="paths"):
        data.image_column(pngs, ["a.png"])


def test_latent_column_round_trip_without_copy():
    z = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    col = data.latent_column(z)
    assert col.type == pa.list_(pa.float32(), 5)
    back = data.latents_from_column(col)
    np.testing.assert_array_equal(back, z)
    assert np.shares_memory(back, z)                  # zero-copy both ways
    np.testing.assert_array_equal(data.latents_from_column(col.slice(2, 3)), z[2:5])
    with pytest.raises(ValueError, match="fixed_size_list"):
        data.latents_from_column(pa.array([1.0, 2.0]))


def test_wplus_round_trip_through_parquet(tmp_path):
    wp = np.random.default_rng(1).standard_normal((4, 6, 8)).astype(np.float32)
    table = data.make_table({"sample_id": np.arange(10, 14), "wplus": wp})
    field = table.schema.field("wplus")
    assert field.metadata == {b"shape": b"[6, 8]"} and field.type.list_size == 48
    pq.write_table(table, tmp_path / "w.parquet")
    back = pq.read_table(tmp_path / "w.parquet")
    np.testing.assert_array_equal(
        data.wplus_from_column(back.column("wplus"), back.schema.field("wplus")), wp)
    assert data.field_shape(data.wplus_field("w", 18, 512)) == (18, 512)
    with pytest.raises(ValueError, match="needs 96"):
        data.wplus_from_column(back.column("wplus"), data.wplus_field("wplus", 12, 8))


def test_make_table_puts_the_id_first_and_checks_lengths():
    t = data.make_table({"score": np.zeros(3, np.float32), "image_id": ["a", "b", "c"]},
                        id_column="image_id")
    assert t.column_names == ["image_id", "score"] and t.schema.field(0).type == pa.string()
    t = data.make_table({"sample_id": data.sample_ids(5, 3), "z": np.zeros((3, 2))})
    assert t.column("sample_id").to_pylist() == [5, 6, 7]
    assert t.schema.field("sample_id").type == pa.int64()
    with pytest.raises(ValueError, match="id column 'sample_id' is missing"):
        data.make_table({"z": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="'z' has 2 rows"):
        data.make_table({"sample_id": np.arange(3), "z": np.zeros((2, 2))})


def test_error_table():
    t = data.error_table([("img-1", "decode", "cannot decode image"),
                          {"id": 7, "stage": "invert", "reason": "wrong shape"}])
    assert t.schema == data.ERRORS_SCHEMA
    assert t.column("id").to_pylist() == ["img-1", "7"]
    assert data.error_table([]).num_rows == 0
    with pytest.raises(ValueError, match="lacks"):
        data.error_table([{"id": 1}])
