import numpy as np
import pyarrow.parquet as pq
import pytest

from gankit.toy import toyfaces as tf
from gankit.data import IMAGE_TYPE


def test_rows_depend_only_on_seed_and_index():
    full = tf.sample_factors(10, seed=7)
    tail = tf.sample_factors(5, seed=7, start=5)
    for name in tf.FACTOR_NAMES:
        assert full[name].dtype == np.float32 and full[name].shape == (10,)
        np.testing.assert_array_equal(full[name][5:], tail[name])
    other = tf.sample_factors(10, seed=8)
    assert not np.array_equal(full["age"], other["age"])
    np.testing.assert_array_equal(tf.render(full, 32)[5:], tf.render(tail, 32))


def test_factors_stay_in_their_ranges():
    f = tf.sample_factors(5000, seed=1)
    for name, (lo, hi) in tf.FACTOR_RANGES.items():
        assert f[name].min() >= lo and f[name].max() <= hi, name
    assert set(np.unique(f["eyeglasses"])) == {0.0, 1.0}


def test_label_rates_match_the_documented_model():
    f = tf.sample_factors(40_000, seed=3)
    lab = tf.labels(f)
    rates = tf.true_rates()
    assert set(rates) == set(tf.ATTRIBUTE_NAMES) == set(lab)
    for name, p in rates.items():
        sigma = np.sqrt(p * (1 - p) / 40_000)
        assert abs(lab[name].mean() - p) < 4 * sigma, (name, lab[name].mean(), p)
    assert abs(rates["blond_hair"] - 0.273) < 0.002       # the number in the docstring


def test_deliberate_correlations_are_present():
    f = tf.sample_factors(40_000, seed=4)
    lab = tf.labels(f)
    cond = tf.conditional_rates()
    glasses_old = lab["eyeglasses"][lab["old"]].mean()
    glasses_young = lab["eyeglasses"][~lab["old"]].mean()
    assert glasses_old - glasses_young > 0.2
    assert abs(glasses_old - cond[("eyeglasses", "old")]) < 0.02
    light = f["skin_tone"] <= 0.5
    assert abs(lab["blond_hair"][light].mean() - cond[("blond_hair", "light skin")]) < 0.02
    assert abs(lab["blond_hair"][~light].mean() - cond[("blond_hair", "dark skin")]) < 0.02
    right = lab["yaw"]
    assert abs(lab["smile"][right].mean() - cond[("smile", "yaw > 0")]) < 0.02
    assert lab["smile"][right].mean() - lab["smile"][~right].mean() > 0.08
    # background is a control: independent of every other label
    for name in tf.ATTRIBUTE_NAMES[:-1]:
        assert abs(np.corrcoef(lab["warm_background"], lab[name])[0, 1]) < 0.03, name


@pytest.mark.parametrize("resolution", [32, 64])
def test_render_shapes_and_dtype(resolution):
    f = tf.sample_factors(6, seed=0)
    images = tf.render(f, resolution)
    assert images.shape == (6, resolution, resolution, 3) and images.dtype == np.uint8
    assert images.std() > 20                                 # not a blank canvas
    one = tf.render({k: v[2] for k, v in f.items()}, resolution)   # scalars: one face
    np.testing.assert_array_equal(one[0], images[2])


def test_render_rejects_bad_input():
    f = tf.sample_factors(2, seed=0)
    with pytest.raises(ValueError, match="resolution"):
        tf.render(f, 48)
    with pytest.raises(ValueError, match="missing"):
        tf.render({"age": f["age"]})


def test_counterfactual_changes_exactly_one_factor():
    f = tf.sample_factors(20, seed=2)
    cf = tf.counterfactual(f, "old", 0.95)                  # attribute name -> its factor
    changed = [n for n in tf.FACTOR_NAMES if not np.array_equal(cf[n], f[n])]
    assert changed == ["age"]
    assert np.all(cf["age"] == np.float32(0.95))
    assert np.all(tf.labels(cf)["old"])
    glasses = tf.counterfactual(f, "eyeglasses", True)
    assert np.all(glasses["eyeglasses"] == 1) and np.array_equal(glasses["smile"], f["smile"])
    with pytest.raises(ValueError, match="unknown factor"):
        tf.counterfactual(f, "beard", 1.0)
    with pytest.raises(ValueError, match="yaw must be in"):
        tf.counterfactual(f, "yaw", 2.0)


def _flip_diff(f, name, lo, hi, resolution=32):
    a = tf.render(tf.counterfactual(f, name, lo), resolution).astype(np.float32)
    b = tf.render(tf.counterfactual(f, name, hi), resolution).astype(np.float32)
    return np.abs(a - b).mean(axis=3)                        # [N, H, W]


def test_smile_changes_the_lower_face_not_the_upper():
    f = tf.sample_factors(32, seed=5)
    diff = _flip_diff(f, "smile", 0.2, 0.9)
    upper, lower = diff[:, :14].mean(axis=(1, 2)), diff[:, 18:].mean(axis=(1, 2))
    assert np.all(lower > 0.5) and np.all(upper < 0.05)


def test_glasses_change_the_eye_band():
    f = tf.sample_factors(32, seed=6)
    diff = _flip_diff(f, "eyeglasses", 0, 1)
    band, rest = diff[:, 11:19].mean(axis=(1, 2)), diff[:, 22:].mean(axis=(1, 2))
    assert np.all(rest <= 0.1 * band) and np.all(band > 2) and band.mean() > 8


def test_every_attribute_is_visible_at_32px():
    """Moving a factor from well below to well above its threshold changes every face."""
    f = tf.sample_factors(64, seed=9)
    for a in tf.ATTRIBUTES:
        lo, hi = tf.FACTOR_RANGES[a.factor]
        low, high = (lo, hi) if a.kind == "binary" else (
            a.threshold - 0.3 * (hi - lo), a.threshold + 0.3 * (hi - lo))
        diff = _flip_diff(f, a.name, low, high)                      # [N, 32, 32]
        assert diff.mean(axis=(1, 2)).min() > 0.5, a.name
        assert np.median((diff > 40).sum(axis=(1, 2))) >= 8, a.name  # pixels that change a lot


def test_render_parallel_matches_render():
    f = tf.sample_factors(300, seed=11)
    np.testing.assert_array_equal(tf.render_parallel(f, 32, workers=2), tf.render(f, 32))


def test_parquet_round_trip(tmp_path):
    out = tmp_path / "faces"
    parts = tf.write_parquet(str(out), n=25, seed=4, resolution=32, rows_per_file=10)
    assert len(parts) == 3 and sorted(p.name for p in out.iterdir()) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    schema = pq.read_schema(out / "part-00000.parquet")
    assert schema.field("image").type == IMAGE_TYPE
    assert str(schema.field("image").type) == "struct<bytes: binary, path: string>"
    assert schema.field("age").type == "float" and schema.field("old").type == "bool"
    images, table = tf.read_parquet_images(str(out))
    expected, f = tf.render_dataset(25, seed=4, resolution=32)
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_array_equal(table.column("age").to_numpy(), f["age"])
    np.testing.assert_array_equal(table.column("eyeglasses").to_numpy(), tf.labels(f)["eyeglasses"])
    ids = table.column("image_id").to_pylist()
    assert len(set(ids)) == 25 and ids[0] == "toy-s4-000000000"
    # a rerun finds every part present and rewrites nothing
    mtimes = [p.stat().st_mtime_ns for p in sorted(out.iterdir())]
    tf.write_parquet(str(out), n=25, seed=4, resolution=32, rows_per_file=10)
    assert mtimes == [p.stat().st_mtime_ns for p in sorted(out.iterdir())]
