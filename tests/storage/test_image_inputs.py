"""Image files as input (jobs.storage.image_inputs): a folder, a glob, a .txt list of URLs, Parquet
rows with a path and no bytes; fixed parts across reruns; junk files as error records."""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from gankit.images import decode_image
from jobs import storage
from jobs.storage import listing
from jobs.storage.image_inputs import part_tables, plan_image_inputs
from jobs.storage.image_reading import no_bytes_reason
from jobs.stages.label import LabelConfig, run_label


def photo_bytes(seed: int, fmt: str = "PNG", size: int = 8) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP"
                                                      else {}))
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    """A folder of photos: nested, three formats, a junk file, a hidden file."""
    root = tmp_path / "photos"
    (root / "b").mkdir(parents=True)
    (root / "a.png").write_bytes(photo_bytes(0))
    (root / "b" / "c.jpg").write_bytes(photo_bytes(1, "JPEG"))
    (root / "b" / "d.webp").write_bytes(photo_bytes(2, "WEBP"))
    (root / "notes.txt").write_bytes(b"not a photo")
    (root / ".hidden.png").write_bytes(photo_bytes(3))
    return root


def plan(url: str, out=None, per_part: int = 2):
    src = storage.open_store(url)
    out_store = storage.open_store(str(out), create=True) if out is not None else None
    return src, plan_image_inputs(src, "image", None, url, out=out_store,
                                  images_per_part=per_part)


def ids_of(inputs) -> list:
    """The ids of an image-file input's listing, in order."""
    return inputs.listing.read(0, inputs.rows).column("image_id").to_pylist()


def rows_of(src, inputs) -> dict:
    """{id: bytes} over every part, read as the workers read them."""
    got = {}
    for spec in inputs.plan:
        for t in part_tables(src, inputs, spec, "image", ["image_id", "image"], 16):
            for i, item in zip(t.column("image_id").to_pylist(), t.column("image").to_pylist()):
                got[i] = item["bytes"]
    return got


def test_folder_lists_every_file_by_relative_path_in_fixed_parts(folder):
    src, inputs = plan(str(folder))
    assert ids_of(inputs) == ["a.png", "b/c.jpg", "b/d.webp", "notes.txt"]
    assert [(p.start, p.stop) for p in inputs.plan] == [(0, 2), (2, 4)]
    got = rows_of(src, inputs)
    assert got["b/c.jpg"] == (folder / "b" / "c.jpg").read_bytes()
    assert decode_image(got["b/d.webp"]).shape == (8, 8, 3)
    assert inputs.identity()["input_listing"] == plan(str(folder))[1].listing.sha256


def test_glob_ids_are_relative_to_its_fixed_prefix(folder):
    src, inputs = plan(str(folder / "b" / "*.*"))
    assert ids_of(inputs) == ["c.jpg", "d.webp"]
    src, inputs = plan(str(folder) + "/**/*.webp")
    assert ids_of(inputs) == ["b/d.webp"]


def test_list_file_takes_relative_and_absolute_entries(folder, tmp_path):
    lst = folder / "list.txt"
    lst.write_text(f"# photos\nb/c.jpg\n\n{folder / 'a.png'}\nb/c.jpg\nmissing.png\n")
    src, inputs = plan(str(lst))
    assert ids_of(inputs) == ["a.png", "b/c.jpg", "missing.png"]
    got = rows_of(src, inputs)
    assert got["a.png"] == (folder / "a.png").read_bytes()
    assert got["missing.png"] is None                 # unreadable: no bytes, its URL kept
    t = next(part_tables(src, inputs, inputs.plan[1], "image", [], 16))
    assert "missing.png cannot be read" in no_bytes_reason(t.column("image").to_pylist()[0])


def test_parquet_rows_with_a_path_and_no_bytes_are_read_from_it(folder, tmp_path):
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "img" / "x.png").write_bytes(photo_bytes(5))
    column = pa.StructArray.from_arrays(
        [pa.array([photo_bytes(6), None, None], pa.binary()),
         pa.array([None, "img/x.png", "../photos/a.png"], pa.string())], ["bytes", "path"])
    pq.write_table(pa.table({"image_id": ["inline", "by_path", "escaping"], "image": column}),
                   data / "rows.parquet")
    src, inputs = plan(str(data))
    got = rows_of(src, inputs)
    assert got["by_path"] == (data / "img" / "x.png").read_bytes()
    assert got["inline"] == photo_bytes(6)
    assert got["escaping"] is None                    # a path leaving the dataset is refused


def test_rerun_after_a_file_is_added_keeps_the_parts(ray_cluster, folder, tmp_path):
    out = tmp_path / "labels"
    cfg = LabelConfig(images=str(folder), out=str(out), images_per_part=2, workers=1,
                      micro_batch=2)
    first = run_label(cfg)
    assert first["rows"] == 3 and first["errors"] == 1
    index = json.loads((out / listing.INDEX).read_text())
    (folder / "b" / "added.png").write_bytes(photo_bytes(9))
    (out / "part-00001.parquet").unlink()             # a part to recompute
    second = run_label(cfg)
    assert json.loads((out / listing.INDEX).read_text()) == index
    assert [(p["start"], p["stop"]) for p in second["parts"]] == [(0, 2), (2, 4)]
    table = storage.read_table(str(out))
    assert sorted(table.column("image_id").to_pylist()) == ["a.png", "b/c.jpg", "b/d.webp"]
    errors = storage.read_table(storage.open_store(str(out)).child("_errors")).to_pylist()
    assert [e["id"] for e in errors] == ["notes.txt"]
    assert "cannot decode image" in errors[0]["reason"]


def test_another_input_into_the_same_output_is_one_sentence(folder, tmp_path):
    out = tmp_path / "o"
    plan(str(folder), out)
    with pytest.raises(ValueError, match="holds the listing of"):
        plan(str(folder / "b"), out)


def test_empty_folder_is_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Parquet files and no image files"):
        plan(str(tmp_path / "empty"))


# ----------------------------------------------------------------------------------------
# Issue #27 item 4: symbolic links stay inside the input folder


def read_all(src, inputs) -> dict:
    """{id: bytes, or the reason its row holds none}, read as the workers read them."""
    got = {}
    for spec in inputs.plan:
        for t in part_tables(src, inputs, spec, "image", ["image_id", "image"], 16):
            for i, item in zip(t.column("image_id").to_pylist(), t.column("image").to_pylist()):
                got[i] = item["bytes"] or no_bytes_reason(item)
    return got


@pytest.fixture
def linked(folder, tmp_path):
    """The photo folder with links planted in it: to /etc/passwd, to a sibling folder's
    photo, a chain of links ending outside, a linked folder outside, a dangling link; and
    links that stay inside (a file, a folder)."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "s.png").write_bytes(photo_bytes(7))
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "sibling.png").symlink_to(secret / "s.png")
    (folder / "b" / "hop2.png").symlink_to(secret / "s.png")
    (folder / "hop1.png").symlink_to(folder / "b" / "hop2.png")
    (folder / "secretdir").symlink_to(secret)
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    (folder / "inside.png").symlink_to(folder / "a.png")
    (folder / "b2").symlink_to(folder / "b")
    return folder


LEAVING = ["passwd.png", "sibling.png", "b/hop2.png", "hop1.png", "secretdir", "dangling.png"]


def test_links_leaving_the_input_folder_become_error_records_naming_them(linked, tmp_path):
    src, inputs = plan(str(linked), tmp_path / "out")
    got = read_all(src, inputs)
    assert "secretdir/s.png" not in got                  # the linked folder is not walked
    for name in LEAVING:
        assert isinstance(got[name], str), name
        assert f"{linked}/{name} cannot be read (leaves the input folder" in got[name], name
        assert "root:x" not in got[name] and "/etc/passwd" not in got[name]  # nor the target
        assert str(tmp_path / "secret") not in got[name] and "gone" not in got[name]
    assert got["inside.png"] == (linked / "a.png").read_bytes()   # links inside are read
    assert "b2/c.jpg" not in got             # a folder linked inside: its files listed once,
    assert got["b/c.jpg"] == (linked / "b" / "c.jpg").read_bytes()   # by their real path


def test_follow_links_reads_them_anywhere(linked, tmp_path):
    src = storage.open_store(str(linked))
    inputs = plan_image_inputs(src, "image", None, str(linked), images_per_part=4,
                               follow_links=True)
    got = read_all(src, inputs)
    assert got["sibling.png"] == got["hop1.png"] == got["secretdir/s.png"] == photo_bytes(7)
    assert "not found" in got["dangling.png"]
    assert inputs.identity()["follow_links"] is True


def test_a_file_swapped_for_a_link_after_listing_is_refused_when_read(folder, tmp_path):
    src, inputs = plan(str(folder), tmp_path / "out")
    (tmp_path / "elsewhere.png").write_bytes(photo_bytes(8))
    (folder / "a.png").unlink()
    (folder / "a.png").symlink_to(tmp_path / "elsewhere.png")
    assert "leaves the input folder" in read_all(src, inputs)["a.png"]


def test_the_file_opened_is_checked_not_only_its_name(folder, tmp_path):
    """A link swapped in between the check of the name and the open: what was opened is
    resolved again (Linux: /proc/self/fd) and refused."""
    import os
    from jobs.storage.image_reading import Unreadable, check_opened
    (tmp_path / "elsewhere.png").write_bytes(b"x")
    fd = os.open(tmp_path / "elsewhere.png", os.O_RDONLY)
    try:
        with pytest.raises(Unreadable, match="leaves the input folder"):
            check_opened(fd, os.fstat(fd), str(folder / "a.png"), str(folder),
                         os.path.realpath(folder))
    finally:
        os.close(fd)


def test_a_list_keeps_relative_entries_inside_its_folder(folder, tmp_path):
    """A list's absolute entries are the user's choice; a relative one that climbs out
    ('..') or goes through a link to outside is refused like a link."""
    (tmp_path / "other.png").write_bytes(photo_bytes(9))
    (folder / "out").symlink_to(tmp_path)
    lst = folder / "list.txt"
    lst.write_text(f"a.png\n../other.png\nout/other.png\n{tmp_path / 'other.png'}\n")
    src, inputs = plan(str(lst), tmp_path / "o")
    got = read_all(src, inputs)                          # ids: relative to tmp_path
    assert got["other.png"] == photo_bytes(9)
    assert got["photos/a.png"] == (folder / "a.png").read_bytes()
    assert "cannot be read (leaves the input folder" in got["photos/../other.png"]
    assert "cannot be read (leaves the input folder" in got["photos/out/other.png"]


def test_parquet_paths_through_a_link_out_of_the_dataset_are_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "outside.png").write_bytes(photo_bytes(5))
    (data / "link.png").symlink_to(tmp_path / "outside.png")
    column = pa.StructArray.from_arrays(
        [pa.array([None, None], pa.binary()), pa.array(["link.png", "/etc/hostname"])],
        ["bytes", "path"])
    pq.write_table(pa.table({"image_id": ["link", "absolute"], "image": column}),
                   data / "rows.parquet")
    src, inputs = plan(str(data))
    got = read_all(src, inputs)
    assert "link.png cannot be read (leaves the input folder" in got["link"]
    assert "paths are relative to the dataset" in got["link"]
    assert "climbs out" in got["absolute"] or "absolute" in got["absolute"]


# ----------------------------------------------------------------------------------------
# Issue #27 item 5: an unreadable entry of a list names its URL and the cause


@pytest.fixture
def http_server():
    """A local HTTP server: /ok.png a photo, /forbidden.png 403, /broken.png 500, /slow.png
    answers after 5 s, anything else 404. Yields its base URL."""
    import http.server
    import threading
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slow.png":
                time.sleep(5)
            status = {"/ok.png": 200, "/slow.png": 200, "/forbidden.png": 403,
                      "/broken.png": 500}.get(self.path, 404)
            body = photo_bytes(4) if status == 200 else b"no"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass                                 # a client that gave up (timed out)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # polls for shutdown every 50 ms (0.5 s by default: each test's teardown waited for it)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_unreadable_list_entry_names_its_url_and_the_cause(tmp_path, http_server):
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join([f"{http_server}/ok.png", f"{http_server}/gone.png",
                              f"{http_server}/forbidden.png", f"{http_server}/broken.png",
                              "http://127.0.0.1:1/x.png", "/nonexistent/y.jpg",
                              "missing.png"]))
    src, inputs = plan(str(lst), tmp_path / "out")
    got = {url: why for why, url in zip(
        read_all(src, inputs).values(),
        inputs.listing.read(0, inputs.rows).column("url").to_pylist())}
    assert got[f"{http_server}/ok.png"] == photo_bytes(4)
    expect = {f"{http_server}/gone.png": "HTTP 404 Not Found",
              f"{http_server}/forbidden.png": "HTTP 403",
              f"{http_server}/broken.png": "HTTP 500",
              "http://127.0.0.1:1/x.png": "connection refused",
              "file:///nonexistent/y.jpg": "not found",
              f"file://{tmp_path}/missing.png": "not found"}
    for url, cause in expect.items():
        assert f"no image bytes: {url} cannot be read ({cause}" in got[url], got[url]
        assert "relative to the dataset" not in got[url]


def test_a_read_that_times_out_says_so(http_server):
    import aiohttp
    from jobs.storage.image_reading import read_url
    options = {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=0.5)}}
    assert read_url(f"{http_server}/slow.png", options) == (None, "timed out")


def test_a_parquet_path_that_cannot_be_read_says_it_is_relative_to_the_dataset(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    column = pa.StructArray.from_arrays(
        [pa.array([None], pa.binary()), pa.array(["img/none.png"])], ["bytes", "path"])
    pq.write_table(pa.table({"image_id": ["x"], "image": column}), data / "rows.parquet")
    src, inputs = plan(str(data))
    assert read_all(src, inputs)["x"] == ("no image bytes: img/none.png cannot be read (not "
                                          "found; paths are relative to the dataset)")


def test_causes_a_root_user_cannot_meet_here_are_named():
    """This suite runs as root, which reads any file: the causes of errors it cannot make
    are checked on the exceptions themselves."""
    from jobs.storage.image_reading import failure
    assert failure(PermissionError(13, "Permission denied")) == "permission denied"
    assert failure(FileNotFoundError(2, "x")) == "not found"


def test_a_fifo_or_a_huge_file_in_the_folder_is_an_error_record_never_read(
        folder, tmp_path, monkeypatch):
    """A FIFO would block the worker's read forever; a file of gigabytes would fill its
    memory: both are refused from their metadata."""
    import os
    from jobs.storage import image_reading
    os.mkfifo(folder / "pipe.png")
    (folder / "huge.png").write_bytes(b"\0" * 4096)
    monkeypatch.setattr(image_reading, "MAX_FILE_BYTES", 1024)
    src, inputs = plan(str(folder), tmp_path / "out")
    got = read_all(src, inputs)
    assert "pipe.png cannot be read (is not a regular file" in got["pipe.png"]
    assert "huge.png cannot be read (is 4,096 bytes, more than any image" in got["huge.png"]
    assert got["a.png"] == (folder / "a.png").read_bytes()


def test_a_list_written_with_a_byte_order_mark_and_crlf_reads_its_first_entry(folder, tmp_path):
    """A list saved by a Windows editor: its first name began with U+FEFF, not found."""
    (folder / "bom.txt").write_bytes(b"\xef\xbb\xbfa.png\r\nb/c.jpg\r\n")
    src, inputs = plan(str(folder / "bom.txt"), tmp_path / "out")
    assert read_all(src, inputs)["a.png"] == (folder / "a.png").read_bytes()


def test_one_image_file_as_the_input_is_one_sentence(folder):
    with pytest.raises(ValueError, match=r"a.png is one file: give its folder, a glob or a "
                                         r"\.txt list"):
        plan(str(folder / "a.png"))


def test_a_file_turned_into_a_folder_since_the_listing_is_named(folder, tmp_path):
    src, inputs = plan(str(folder), tmp_path / "out")
    (folder / "a.png").unlink()
    (folder / "a.png").mkdir()
    assert "a.png cannot be read (is a folder, not a file" in read_all(src, inputs)["a.png"]


def test_an_s3_list_reads_its_files_and_refuses_an_entry_that_climbs(s3_bucket, s3_options,
                                                                      tmp_path):
    """S3 has no links, but an entry '../x' (which a client normalises into another key)
    leaves the list's folder: refused; the others read, a missing one named with its
    cause."""
    import s3fs
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_options)
    prefix = f"{s3_bucket}/boundary"
    fs.pipe(f"{prefix}/photos/a.png", photo_bytes(1))
    fs.pipe(f"{prefix}/photos/b.png", photo_bytes(3))
    fs.pipe(f"{prefix}/secret.png", photo_bytes(2))
    fs.pipe(f"{prefix}/photos/list.txt", b"a.png\nb.png\n../secret.png\n")
    url = f"s3://{prefix}/photos/list.txt"
    src = storage.open_store(url, s3_options)
    out = storage.open_store(str(tmp_path / "out"), create=True)
    inputs = plan_image_inputs(src, "image", None, url, out=out, images_per_part=4)
    fs.rm(f"{prefix}/photos/b.png")
    got = read_all(src, inputs)
    assert got["a.png"] == photo_bytes(1)
    assert got["b.png"].endswith("b.png cannot be read (not found)")
    assert "../secret.png cannot be read (leaves the input folder" in got["../secret.png"]
