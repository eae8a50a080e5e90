"""The listing of an image-file input (jobs.storage.listing, jobs.storage.walk): Parquet shards
written while the input is walked, sorted through bounded runs; a worker reads only its part's rows;
outputs that hold the older `_inputs.json` resume; S3 prefixes are listed page by page;
photos are found by id."""
from __future__ import annotations

import hashlib
import json
import pickle
import random

import pyarrow.parquet as pq
import pytest

from jobs.storage import listing, walk
from jobs import storage
from jobs.storage.image_inputs import plan_image_inputs
from jobs.storage.source_photos import part_source_urls


@pytest.fixture
def small_layout(monkeypatch):
    """Walks in batches of 5 files, runs of 16 entries merged 4 at a time, row groups of 8
    rows (2 parts of 4), shards of 3 row groups: listings of a few hundred files need many
    runs, merges of merges and many shards."""
    monkeypatch.setattr(walk, "BATCH_FILES", 5)
    monkeypatch.setattr(listing, "CHUNK_ROWS", 16)
    monkeypatch.setattr(listing, "RUN_GROUP_ROWS", 4)
    monkeypatch.setattr(listing, "FAN_IN", 4)
    monkeypatch.setattr(listing, "MIN_GROUP_ROWS", 8)
    monkeypatch.setattr(listing, "GROUPS_PER_SHARD", 3)


def make_tree(root, count: int, seed: int = 0) -> list:
    """`count` empty files in nested folders, made in shuffled order (plus hidden ones);
    returns their relative paths."""
    rng = random.Random(seed)
    names = [f"d{rng.randrange(7)}/e{rng.randrange(3)}/f{i:04d}.png" for i in range(count)]
    rng.shuffle(names)
    for name in names + ["_skip/x.png", "d0/.hidden.png"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return names


def plan(url: str, out, per_part: int = 4):
    src = storage.open_store(url)
    out_store = storage.open_store(str(out), create=True)
    return plan_image_inputs(src, "image", None, url, out=out_store, images_per_part=per_part)


def ids_of(inputs) -> list:
    return inputs.listing.read(0, inputs.rows).column("image_id").to_pylist()


def test_listing_is_sorted_through_runs_smaller_than_it(tmp_path, small_layout):
    names = make_tree(tmp_path / "photos", 300)
    inputs = plan(str(tmp_path / "photos"), tmp_path / "out")
    assert ids_of(inputs) == sorted(names)
    index = json.loads((tmp_path / "out" / listing.INDEX).read_text())
    assert index["sorted_in"]["runs"] > 4                       # the walk was not in order
    assert index["sorted_in"]["peak_rows"] < len(names) / 10    # never the whole listing
    assert index["shards"] == -(-len(names) // index["shard_rows"]) > 1
    sizes = pq.read_table(tmp_path / "out" / listing.shard_name(0)).column("size")
    assert set(sizes.to_pylist()) == {0}                        # from the walk


def test_a_list_file_streams_and_keeps_ids_relative_to_its_common_folder(
        tmp_path, small_layout, monkeypatch):
    monkeypatch.setattr("jobs.storage.file_entries.ListEntries.LINES_BYTES", 64)
    names = [f"photos/d{i % 5}/f{i:03d}.jpg" for i in range(120)]
    random.Random(1).shuffle(names)
    lines = ["# shuffled"] + names + [str(tmp_path / names[0]), ""]   # a repeat, absolute
    (tmp_path / "list.txt").write_text("\n".join(lines))
    inputs = plan(str(tmp_path / "list.txt"), tmp_path / "out")
    rows = inputs.listing.read(0, inputs.rows)
    assert rows.column("image_id").to_pylist() == sorted(n[len("photos/"):] for n in names)
    assert rows.column("url")[0].as_py() == f"file://{tmp_path}/photos/d0/f000.jpg"


def test_a_worker_reads_only_its_parts_rows(tmp_path, small_layout):
    names = sorted(make_tree(tmp_path / "photos", 200))
    inputs = plan(str(tmp_path / "photos"), tmp_path / "out")
    spec = inputs.plan[17]                          # rows [68, 72): in shard 2 of 24 rows
    shard = spec.start // inputs.listing.shard_rows
    for k in range(json.loads((tmp_path / "out" / listing.INDEX).read_text())["shards"]):
        if k != shard:                              # every other shard gone
            (tmp_path / "out" / listing.shard_name(k)).unlink()
    got = inputs.listing.read(spec.start, spec.stop).column("image_id").to_pylist()
    assert got == names[spec.start:spec.stop]
    with pytest.raises(ValueError, match=r"_inputs is damaged \(listing-00000.parquet is "
                                         r"missing\): delete .*_inputs and rerun"):
        inputs.listing.read(0, 4)


def test_workers_get_the_same_few_bytes_whatever_the_listing(tmp_path, small_layout):
    make_tree(tmp_path / "small", 20)
    make_tree(tmp_path / "large", 400)
    small = plan(str(tmp_path / "small"), tmp_path / "o1")
    large = plan(str(tmp_path / "large"), tmp_path / "o2")
    sizes = [len(pickle.dumps(i.for_workers())) for i in (small, large)]
    assert abs(sizes[1] - sizes[0]) < 16            # a few digits differ, no entries
    assert len(pickle.dumps(large)) > sizes[1] + 50 * 10   # the plan stays on the driver


def as_legacy(out, inputs, url: str) -> list:
    """Rewrite `out`'s listing in the layout of outputs written before: `_inputs.json`."""
    rows = inputs.listing.read(0, inputs.rows)
    files = [list(r) for r in zip(rows.column("image_id").to_pylist(),
                                  rows.column("url").to_pylist())]
    storage.open_store(str(out)).fs.rm(str(out / listing.LISTING_DIR), recursive=True)
    (out / listing.LEGACY).write_text(json.dumps({"images": url, "kind": "folder",
                                                  "files": files}))
    return files


def test_an_inputs_json_listing_is_converted_with_its_fingerprint(tmp_path, small_layout):
    url = str(tmp_path / "photos")
    make_tree(tmp_path / "photos", 60)
    first = plan(url, tmp_path / "out")
    files = as_legacy(tmp_path / "out", first, url)
    (tmp_path / "photos" / "a-new-file.png").write_bytes(b"")         # not in the listing
    again = plan(url, tmp_path / "out")
    assert ids_of(again) == [i for i, _ in files]
    # the fingerprint older versions put in their manifests' identity
    assert again.identity()["input_listing"] == \
        hashlib.sha256(json.dumps(files).encode()).hexdigest() == first.listing.sha256
    with pytest.raises(ValueError, match="holds the listing of"):
        plan(str(tmp_path / "photos" / "d0"), tmp_path / "out")


def test_an_output_with_inputs_json_resumes_without_recomputing(ray_cluster, tmp_path):
    from jobs.stages.label import LabelConfig, run_label
    from test_image_inputs import photo_bytes
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        (photos / f"p{i}.png").write_bytes(photo_bytes(i))
    out = tmp_path / "labels"
    cfg = LabelConfig(images=str(photos), out=str(out), images_per_part=2, workers=1,
                      micro_batch=2)
    first = run_label(cfg)
    before = storage.read_table(str(out))
    src = storage.open_store(str(photos))
    as_legacy(out, plan_image_inputs(src, "image", None, str(photos), out=None,
                                     images_per_part=2), str(photos))
    (photos / "p9.png").write_bytes(photo_bytes(9))
    second = run_label(cfg)
    assert second["runs"][-1]["computed"] == [] and second["runs"][-1]["reused"] == [0, 1, 2]
    assert second["identity"] == first["identity"]
    assert storage.read_table(str(out)).equals(before)


def test_an_s3_prefix_is_listed_page_by_page(s3_bucket, s3_options, tmp_path, monkeypatch,
                                             small_layout):
    import s3fs
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    prefix = f"{s3_bucket}/listing-pages"
    names = [f"d{i % 3}/f{i:02d}.png" for i in range(23)]
    for name in names + ["_skip/x.png", "d1/.hidden.png"]:
        fs.pipe(f"{prefix}/{name}", b"")
    pages = list(walk.s3_pages(fs, prefix + "/", page_keys=4))
    assert len(pages) == 7                          # 25 keys, 4 a page
    assert sorted(p for page, _ in pages for p, _ in page) == sorted(fs.find(prefix))
    monkeypatch.setattr(walk, "S3_PAGE_KEYS", 4)
    url = f"s3://{prefix}"
    src = storage.open_store(url, s3_options)
    out = storage.open_store(str(tmp_path / "out"), create=True)
    inputs = plan_image_inputs(src, "image", None, url, out=out, images_per_part=4)
    assert ids_of(inputs) == sorted(names)
    index = listing.read_index(out)
    assert index["sorted_in"]["runs"] == 1          # S3 lists in key order: one run, no merge
    assert index["sorted_in"]["peak_rows"] < len(names)
    glob = plan_image_inputs(storage.open_store(f"{url}/d1/*.png", s3_options), "image", None,
                             f"{url}/d1/*.png", images_per_part=4)
    assert ids_of(glob) == sorted(n[3:] for n in names if n.startswith("d1/"))


def test_a_parts_photos_are_read_from_its_rows_in_both_layouts(tmp_path, small_layout):
    url = str(tmp_path / "photos")
    names = sorted(make_tree(tmp_path / "photos", 150))
    inputs = plan(url, tmp_path / "out")
    out = storage.open_store(str(tmp_path / "out"))
    spec = inputs.plan[1]
    expect = {n: f"file://{url}/{n}" for n in names[spec.start:spec.stop]}
    assert part_source_urls(out, spec) == expect
    as_legacy(tmp_path / "out", inputs, url)
    assert part_source_urls(out, spec) == expect
    assert part_source_urls(storage.open_store(str(tmp_path / "elsewhere"), create=True),
                            spec) is None


# ----------------------------------------------------------------------------------------
# Issue #27: a damaged listing, odd file names


def damage(out, how: str) -> None:
    shard, index = out / listing.shard_name(1), out / listing.INDEX
    if how == "missing":
        shard.unlink()
    elif how == "truncated":
        shard.write_bytes(shard.read_bytes()[:300])
    elif how == "grown":
        shard.write_bytes(shard.read_bytes() + b"\0")
    elif how == "junk index":
        index.write_text('{"rows": 3')
    elif how == "index fields":
        index.write_text(json.dumps(dict(json.loads(index.read_text()), shard_rows="x")))


@pytest.mark.parametrize("how", ["missing", "truncated", "grown", "junk index",
                                 "index fields"])
def test_a_damaged_listing_is_one_sentence_before_any_work(tmp_path, small_layout, how):
    """A rerun over an output whose listing lost a shard, or whose shard or index was
    edited, says so and how to list again, never `[Errno 2]`, a KeyError or advice to
    delete one shard (which the index still names); listed again, the parts are the same."""
    make_tree(tmp_path / "photos", 100)
    first = plan(str(tmp_path / "photos"), tmp_path / "out")
    damage(tmp_path / "out", how)
    with pytest.raises(ValueError, match=r"the listing kept in .*/out/_inputs is damaged "
                                         r"\(.*\): delete .*/out/_inputs and rerun"):
        plan(str(tmp_path / "photos"), tmp_path / "out")
    storage.open_store(str(tmp_path / "out")).fs.rm(str(tmp_path / "out" / "_inputs"),
                                                    recursive=True)
    again = plan(str(tmp_path / "photos"), tmp_path / "out")
    assert again.identity() == first.identity()


def test_a_flipped_bit_in_a_shard_is_named_when_its_rows_are_read(tmp_path, small_layout):
    make_tree(tmp_path / "photos", 40)
    inputs = plan(str(tmp_path / "photos"), tmp_path / "out")
    shard = tmp_path / "out" / listing.shard_name(0)
    data = bytearray(shard.read_bytes())
    data[60] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged \(listing-00000.parquet: row group 0 fails "
                                         r"its check: .*\): delete .*_inputs and rerun"):
        inputs.listing.read(0, 4)


def test_odd_file_names_are_listed_and_read_or_named(tmp_path):
    """A newline in a name, a name of other bytes than UTF-8 (was a UnicodeEncodeError for
    the whole listing), names that differ by case or Unicode normalisation, a path longer
    than the system takes (was an OSError for the whole listing)."""
    import os
    from test_image_inputs import photo_bytes, read_all
    root = tmp_path / "photos"
    root.mkdir()
    names = ["new\nline.png", "caf\u00e9.png", "cafe\u0301.png", "A.png", "a.png"]
    for j, name in enumerate(names):
        (root / name).write_bytes(photo_bytes(j))
    with open(os.fsencode(root) + b"/bad\xffname.png", "wb") as f:
        f.write(photo_bytes(9))
    fd = os.open(root, os.O_RDONLY)
    for _ in range(20):                               # 20 x 250 bytes: past PATH_MAX
        os.mkdir("y" * 250, dir_fd=fd)
        fd, parent = os.open("y" * 250, os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    src = storage.open_store(str(root))
    inputs = plan_image_inputs(src, "image", None, str(root), images_per_part=4)
    got = read_all(src, inputs)
    assert {n: got[n] for n in names} == {n: photo_bytes(j) for j, n in enumerate(names)}
    assert got["bad\\xffname.png"].endswith("bad\\xffname.png cannot be read (its name is "
                                             "not UTF-8 text: rename the file to read it)")
    [deep] = [k for k in got if k.startswith("y")]
    assert got[deep].endswith("cannot be read (its path is longer than the system allows)")


def test_paste_back_reads_no_photo_through_a_link_planted_since_align(tmp_path):
    """The photos behind an output are read under the boundary their job had: a photo
    swapped for a link out of the folder after align is refused, its cause given."""
    from test_image_inputs import photo_bytes
    from jobs.storage.source_photos import source_photo_reader
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"p{i}.png").write_bytes(photo_bytes(i))
    inputs = plan(str(photos), tmp_path / "out")
    (tmp_path / "secret.png").write_bytes(photo_bytes(9))
    (photos / "p1.png").unlink()
    (photos / "p1.png").symlink_to(tmp_path / "secret.png")
    out = storage.open_store(str(tmp_path / "out"))
    read = source_photo_reader(out, inputs.plan[0], {"images": str(photos)}, {})
    assert read("p0.png") == (photo_bytes(0), None)
    data, why = read("p1.png")
    assert data is None and "cannot be read (leaves the input folder" in why
    linked = source_photo_reader(out, inputs.plan[0], {"images": str(photos),
                                                       "follow_links": True}, {})
    assert linked("p1.png") == (photo_bytes(9), None)


def test_two_files_of_one_id_keep_distinct_ids(tmp_path, small_layout):
    """A list naming /data/x.png and http://data/x.png gave both rows the id data/x.png: the
    good row and the other's error record could not be told apart."""
    names = [f"{tmp_path}/d/x{i:02d}.png" for i in range(30)]
    lines = names + [f"http://{n.lstrip('/')}" for n in names[:20]]
    (tmp_path / "mixed.txt").write_text("\n".join(lines))
    ids = ids_of(plan(str(tmp_path / "mixed.txt"), tmp_path / "out"))
    assert len(ids) == len(set(ids)) == 50
    key = f"{str(tmp_path).lstrip('/')}/d/x00.png"
    assert ids[:3] == [key, key + "#2", key.replace("x00", "x01")]
