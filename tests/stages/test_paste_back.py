"""The paste_back stage on a local Ray cluster: align --faces all on a photo with several faces
(scikit-image's astronaut beside her mirror image) -> invert -> edit -> paste_back, one output
photo per (photo, boundary, strength) holding every face's edit; resume; Parquet output in
the Hugging Face image layout; the edits found by an index when the manifests do not chain;
inputs of the wrong kind refused in one sentence."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from gankit.faces import alignment as faces
from gankit.data import IMAGE_TYPE
from gankit.images import decode_image
from jobs import storage
from jobs.stages.paste_back import PasteBackConfig, run_paste_back
from jobs.stages.paste_back_rows import output_path, path_token
from test_faces import distance_to_polygon, pixel_centres, skimage_photo

pytest.importorskip("dlib", reason="dlib is not installed: pip install 'gankit[faces]'")
pytestmark = pytest.mark.integration

R = 32


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def pair_photo() -> np.ndarray:
    """The astronaut beside her mirror image: [512, 1024, 3], two heads (and, to dlib's
    HOG detector, a patch of each space suit)."""
    astronaut = decode_image(skimage_photo("astronaut.png"))
    return np.ascontiguousarray(np.concatenate([astronaut, astronaut[:, ::-1]], axis=1))


@pytest.fixture(scope="module")
def edited(ray_cluster, model_files, tmp_path_factory):
    """align --faces all (one photo per part) -> invert -> edit along two W boundaries."""
    from gankit.latent.boundaries import Boundary
    from jobs.stages.align import AlignConfig, run_align
    from jobs.stages.edit import EditConfig, run_edit
    from jobs.stages.invert import InvertConfig, run_invert
    root = tmp_path_factory.mktemp("paste")
    photos = root / "photos"
    photos.mkdir()
    (photos / "pair.png").write_bytes(png(pair_photo()))
    (photos / "coffee.png").write_bytes(skimage_photo("coffee.png"))       # no face
    (photos / "junk.jpg").write_bytes(b"not a photo")
    rng = np.random.default_rng(0)
    boundaries = []
    for name in ("w_a", "w_b"):
        normal = rng.standard_normal(16)
        Boundary(attribute=name, space="w", normal=normal / np.linalg.norm(normal),
                 intercept=0.0).save(str(root / f"{name}.npz"))
        boundaries.append(str(root / f"{name}.npz"))
    run_align(AlignConfig(images=str(photos), out=str(root / "aligned"), resolution=R,
                          faces="all", images_per_part=1, workers=1))
    run_invert(InvertConfig(images=str(root / "aligned"), out=str(root / "inverted"),
                            model=model_files["model32"], steps=2, workers=1, batch_size=4))
    run_edit(EditConfig(latents=str(root / "inverted"), out=str(root / "edits"),
                        boundaries=boundaries, strengths=[-4.0, 4.0], model=model_files["model32"],
                        classifier="", device="cpu", workers=1, micro_batch=8))
    return root


def faces_of(root, photo: str) -> list:
    rows = storage.read_table(str(root / "aligned")).to_pylist()
    return [r for r in rows if r["source_id"] == photo]


def test_every_face_of_a_photo_goes_into_one_output_photo(edited, tmp_path):
    out = tmp_path / "pasted"
    manifest = run_paste_back(PasteBackConfig(edits=str(edited / "edits"),
                                              aligned=str(edited / "aligned"), out=str(out),
                                              output="both", workers=1))
    pair = faces_of(edited, "pair.png")
    assert len(pair) >= 2                               # both heads (and maybe suit patches)
    rows = storage.read_table(str(out)).to_pylist()
    assert manifest["rows"] == len(rows) == 4           # 1 photo x 2 boundaries x 2 strengths
    assert manifest["errors"] == 0 and manifest["num_parts"] == 3   # one per photo of align
    assert {(r["boundary"].rsplit("/", 1)[-1], r["strength"]) for r in rows} == {
        (b, s) for b in ("w_a.npz", "w_b.npz") for s in (-4.0, 4.0)}
    photo = pair_photo()
    reach = [faces.Blend().dilation * faces.quad_size(np.reshape(f["quad"], (4, 2)))
             for f in pair]                             # each face's dilation, in pixels
    hulls = [faces.face_hull(np.reshape(f["landmarks"], (68, 2))) for f in pair]
    for r in rows:
        assert r["faces"] == len(pair) and r["source_id"] == "pair.png"
        assert r["image"]["path"] == output_path("pair.png", r["boundary"], r["strength"], "png")
        data = (out / r["image"]["path"]).read_bytes()
        assert r["image"]["bytes"] == data              # both: the file and the row agree
        pasted = decode_image(data)
        changed = (pasted != photo).any(axis=2)                         # [H, W]
        for f in pair:                                  # every face's edit is in this photo
            cx, cy = np.reshape(f["landmarks"], (68, 2))[27:36].mean(0).astype(int)
            assert changed[cy - 2:cy + 3, cx - 2:cx + 3].any(), f["image_id"]
        beyond = np.min([distance_to_polygon(pixel_centres(changed), h) - d
                         for h, d in zip(hulls, reach)], axis=0)
        assert beyond.max() <= 1.5                      # outside every dilated hull: exact
    # Hugging Face's image layout: struct {bytes: binary, path: string}
    schema = storage.part_footer(storage.open_store(str(out)),
                                 str(out / "part-00002.parquet"))[0]
    assert schema.field("image").type == IMAGE_TYPE


def test_a_rerun_resumes_and_recomputes_nothing(edited, tmp_path):
    out = tmp_path / "pasted"
    cfg = PasteBackConfig(edits=str(edited / "edits"), aligned=str(edited / "aligned"),
                          out=str(out), output="parquet", strengths=[4.0], workers=1)
    first = run_paste_back(cfg)
    assert first["runs"][-1]["computed"] == [0, 1, 2]
    assert not (out / "photos").exists()                # parquet: no files
    rows = storage.read_table(str(out)).to_pylist()
    assert len(rows) == 2 and all(r["strength"] == 4.0 for r in rows)
    assert all(decode_image(r["image"]["bytes"]).shape == (512, 1024, 3) for r in rows)
    (out / "part-00001.parquet").unlink()               # as if that part had not committed
    again = run_paste_back(cfg)
    assert again["runs"][-1]["computed"] == [1] and again["runs"][-1]["reused"] == [0, 2]
    third = run_paste_back(cfg)
    assert third["runs"][-1]["computed"] == [] and third["rows"] == 2
    assert storage.read_table(str(out)).to_pylist() == rows


def test_missing_edits_are_error_records_and_the_others_are_pasted(edited, model_files,
                                                                   tmp_path):
    from jobs.stages.edit import EditConfig, run_edit
    pair = faces_of(edited, "pair.png")
    boundary = str(edited / "w_a.npz")
    run_edit(EditConfig(latents=str(edited / "inverted"), out=str(tmp_path / "edits"),
                        boundaries=[boundary], strengths=[4.0], count=1,
                        model=model_files["model32"], classifier="", device="cpu", workers=1,
                        micro_batch=8))                 # the first face only
    out = tmp_path / "pasted"
    manifest = run_paste_back(PasteBackConfig(edits=str(tmp_path / "edits"),
                                              aligned=str(edited / "aligned"), out=str(out),
                                              workers=1, blend="square"))
    rows = storage.read_table(str(out)).to_pylist()
    assert [r["faces"] for r in rows] == [1]
    assert (out / rows[0]["image"]["path"]).exists() and rows[0]["image"]["bytes"] is None
    errors = storage.read_table(storage.open_store(str(out)).child("_errors")).to_pylist()
    assert manifest["errors"] == len(errors) == len(pair) - 1
    assert {e["id"] for e in errors} == {f["image_id"] for f in pair[1:]}
    assert all(e["stage"] == "paste_back" and "no edit rows" in e["reason"] for e in errors)


def test_edits_found_by_their_ids_when_the_manifests_do_not_chain(edited, tmp_path):
    """A copy of the align output is not what the inversion read: the driver indexes the
    ids instead, and the output is the same."""
    copy = tmp_path / "aligned_copy"
    shutil.copytree(edited / "aligned", copy)
    outs = {}
    for name, aligned in (("lineage", edited / "aligned"), ("index", copy)):
        outs[name] = tmp_path / name
        run_paste_back(PasteBackConfig(edits=str(edited / "edits"), aligned=str(aligned),
                                       out=str(outs[name]), output="parquet", workers=1))
    a, b = (storage.read_table(str(outs[n])).to_pylist() for n in ("lineage", "index"))
    assert len(a) == 4 and a == b


def test_photo_ids_become_safe_distinct_file_names():
    assert path_token("sub/dir/a b.png") == "sub/dir/a%20b.png"
    assert path_token("../x") == "%2E%2E/x" and path_token("a//b") == "a/%2F/b"
    assert path_token("a_b") != path_token("a b") != path_token("a%20b")
    assert output_path("p.jpg", "w/smile", -3.0, "jpeg") == "photos/p.jpg__w_smile_-3.jpg"
    assert output_path("p", "w/smile", 0.5, "png").endswith("_+0.5.png")


def write_dataset(path, job: str, table: pa.Table) -> None:
    store = storage.open_store(str(path), create=True)
    storage.write_table_part(store, "part-00000.parquet", table, {"index": 0})
    store.write_json("_manifest.json", {"job": job, "status": "complete"})


def test_inputs_of_the_wrong_kind_are_named_in_one_sentence(tmp_path):
    labels = pa.table({"sample_id": pa.array([0, 1], pa.int64()),
                       "logit_smile": pa.array([0.5, -1.0], pa.float32())})
    write_dataset(tmp_path / "labels", "label", labels)
    write_dataset(tmp_path / "samples", "sample", labels)
    cmd = [sys.executable, "-m", "jobs.commands.cli", "paste-back", "--edits",
           str(tmp_path / "labels"), "--aligned", str(tmp_path / "samples"), "--out",
           str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gankit paste-back: error: paste-back "
                                                   "cannot use its inputs: edits ")
    assert "(a 'label' output) has no image_id, boundary, strength, image column" in lines[0]
    assert "aligned " in lines[0] and "(a 'sample' output) has no image_id, source_id, quad, " \
        "landmarks column" in lines[0]
    assert "unpack" not in done.stderr and "terminate" not in done.stderr
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_the_manifest_records_the_blend(edited, tmp_path):
    out = tmp_path / "pasted"
    run_paste_back(PasteBackConfig(edits=str(edited / "edits"), aligned=str(edited / "aligned"),
                                   out=str(out), strengths=[-4.0], blend="square", workers=1))
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["job"] == "paste_back" and manifest["identity"]["blend"] == "square"
    with pytest.raises(ValueError, match="was written with blend='square'"):
        run_paste_back(PasteBackConfig(edits=str(edited / "edits"),
                                       aligned=str(edited / "aligned"), out=str(out),
                                       strengths=[-4.0], workers=1))


def test_the_stage_reads_the_runs_edits_and_aligned_faces_unless_told(tmp_path):
    from jobs.config import ConfigError
    from jobs.stages.pipeline import PipelineConfig, stage_configs
    run = PipelineConfig(root=str(tmp_path), stages=["align", "invert", "edit", "paste_back"],
                         align={"images": "photos/"},
                         paste_back={"strengths": [3.0], "output": "both"})
    cfg = stage_configs(run)["paste_back"]
    assert (cfg.edits, cfg.aligned, cfg.out) == tuple(str(tmp_path / d) for d in (
        "edits", "aligned", "pasted"))
    assert cfg.strengths == [3.0] and cfg.output == "both" and cfg.blend == "face"
    other = dict(run.__dict__, paste_back={"aligned": "elsewhere"})
    assert stage_configs(PipelineConfig(**other))["paste_back"].aligned == "elsewhere"
    with pytest.raises(ConfigError, match="^paste_back.out is set by the pipeline"):
        stage_configs(PipelineConfig(**dict(other, paste_back={"out": "x"})))
    with pytest.raises(ConfigError, match=r"^paste_back.output must be one of files, parquet"):
        stage_configs(PipelineConfig(**dict(other, paste_back={"output": "zip"})))


def test_photos_of_a_parquet_input_are_read_from_its_rows(ray_cluster, model_files, edited,
                                                           tmp_path):
    import pyarrow.parquet as pq

    from gankit.data import image_column
    from jobs.stages.align import AlignConfig, run_align
    from jobs.stages.edit import EditConfig, run_edit
    from jobs.stages.invert import InvertConfig, run_invert
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = skimage_photo("astronaut.png")
    pq.write_table(pa.table({"image_id": ["astro", "coffee"], "image": image_column(
        [astronaut, skimage_photo("coffee.png")])}), photos / "a.parquet")
    pq.write_table(pa.table({"image_id": ["pair"], "image": image_column(
        [png(pair_photo())])}), photos / "b.parquet")
    run_align(AlignConfig(images=str(photos), out=str(tmp_path / "aligned"), resolution=R,
                          workers=1))
    run_invert(InvertConfig(images=str(tmp_path / "aligned"), out=str(tmp_path / "inverted"),
                            model=model_files["model32"], steps=1, workers=1, batch_size=4))
    run_edit(EditConfig(latents=str(tmp_path / "inverted"), out=str(tmp_path / "edits"),
                        boundaries=[str(edited / "w_a.npz")], strengths=[4.0],
                        model=model_files["model32"], classifier="", device="cpu", workers=1,
                        micro_batch=8))
    out = tmp_path / "pasted"
    run_paste_back(PasteBackConfig(edits=str(tmp_path / "edits"), aligned=str(tmp_path / "aligned"),
                                   out=str(out), output="parquet", workers=1))
    rows = {r["source_id"]: r for r in storage.read_table(str(out)).to_pylist()}
    assert set(rows) == {"astro", "pair"} and all(r["faces"] == 1 for r in rows.values())
    for photo_id, photo in (("astro", decode_image(astronaut)), ("pair", pair_photo())):
        pasted = decode_image(rows[photo_id]["image"]["bytes"])
        assert pasted.shape == photo.shape and (pasted != photo).any()
