"""The paste-back stage: put edited faces back into the photos they were aligned from, on
CPU actors, one part of source photos at a time.

    photos --align--> aligned/ (faces, quads, landmarks) --invert--> inverted/ --edit--> edits/
    edits/ + aligned/ + the photos --paste_back--> out/

Parts. Part k is the photos of align's part k (align writes every face of a photo into the
part of its photo), so its row range is align's and every face of a photo, `<id>#k` with
`align --faces all`, is pasted into the SAME output photo. A part finds its faces' edit rows
without reading every edit part: the driver plans, for each aligned part, the edit parts that
hold its faces (`plan_edit_parts`):
  - lineage, the usual case (`gankit run`, or align -> invert -> edit by hand): the edits'
    manifest names the latents it edited, whose manifest is an inversion of this very align
    output. invert writes its part k from input part k and edit its part k from the first
    rows of input part k, so edit part k holds faces of aligned part k only: the plan is
    k -> [k], found from three manifests, with no row read at all;
  - otherwise an index: the driver reads the `image_id` column of every edit part and every
    aligned part (ids only, never images), hashes them and records which edit parts hold
    which aligned part's faces (16 bytes per distinct face and edit part on the driver).
An actor then reads its aligned part, the ids of its edit parts, and only the edit images and
photos of its own faces, a photo at a time.

Output part k, one row per (photo, boundary, strength) with an edit of any of its faces:

    source_id  string   the photo's id (as align named it)
    boundary   string   the boundary's name (as the edit stage wrote it)
    strength   float32
    faces      int32    faces pasted into this photo
    image      struct {bytes, path}  the edited photo, Hugging Face's image layout: `path`
               is `photos/<photo id>__<boundary>_<strength>.<format>` under the output;
               `bytes` holds the encoded photo with output 'parquet' or 'both' (null with
               'files', where the file at `path` holds it)

Blending: gankit.faces (`face`: the jaw-and-brows hull of the landmarks, dilated and
feathered; `square`: the aligned square). Error records in `_errors/` (stage 'paste_back'):
a photo that cannot be read or decoded, or whose size differs from what align saw; a face
with no quad or landmarks; a face with no edit rows, or missing a (boundary, strength) its
photo's other faces have (that photo is written with the others); an edit image that cannot
be decoded; an edit row whose face is not in the aligned part it came from (lineage only).
Image files are written (atomically, each) before their part commits: a rerun computes only
the parts not committed, and rewrites the same files of a part that died half-way.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from gankit.faces import BLENDS, Blend
from jobs import config, options, runtime, storage
from jobs.config import option, public_config, require
from jobs.options import ActorOptions, ImageCodecOptions, StorageOptions
from jobs.runtime import PartWorker
from jobs.storage import PartSpec, PartWriter, Store

log = logging.getLogger("gankit")

OUTPUTS = ("files", "parquet", "both")
PHOTOS_DIR = "photos"                 # image files under the output: photos/<name>
EDIT_COLUMNS = ("image_id", "boundary", "strength", "image")
ALIGNED_COLUMNS = ("image_id", "source_id", "quad")
ROW_GROUP_BYTES = 64 << 20            # output rows are written in groups of about this size
ROW_GROUP_ROWS = 256


@dataclass
class PasteBackConfig(ActorOptions, ImageCodecOptions, StorageOptions):
    edits: str = option("", "an edit output of inverted `gankit align` faces", required=True,
                        identity=True)
    aligned: str = option("", "the `gankit align` output those faces came from",
                          required=True, identity=True)
    out: str = option("", "output URL: Parquet parts, one row per (photo, boundary, "
                          "strength), and the photos under photos/", required=True)
    strengths: Optional[list[float]] = option(None, "the strengths to paste (default: all)",
                                              identity=True)
    blend: str = option(Blend.kind, "face: only the face, the hull of the jaw and brows "
                                    "landmarks; square: the whole aligned square",
                        choices=BLENDS, identity=True)
    dilation: float = option(Blend.dilation, "face blend: the mask reaches this share of "
                                             "the aligned square's side past the hull",
                             identity=True)
    feather: float = option(Blend.feather, "the blend fades out over this share of the "
                                           "aligned square's side, inside the mask's edge",
                            identity=True)
    output: str = option("files", "files: image files under photos/, the Parquet rows "
                                  "holding their paths; parquet: the images in the Parquet "
                                  "rows only; both", choices=OUTPUTS, identity=True)

    def validate(self) -> None:
        for name in ("edits", "aligned", "out"):
            require(bool(getattr(self, name)), name, "must be a URL")
        for name in ("dilation", "feather"):
            value = getattr(self, name)
            require(0 <= value <= 0.5, name, f"must be in [0, 0.5] (got {value})")
        options.validate(self)

    def blend_spec(self) -> Blend:
        return Blend(self.blend, self.dilation, self.feather)

    def identity(self) -> dict:
        return dict(config.identity_of(self), **options.identity(self, "fp32"))


def out_schema() -> pa.Schema:
    from gankit.data import IMAGE_TYPE
    return pa.schema([
        pa.field("source_id", pa.string()), pa.field("boundary", pa.string()),
        pa.field("strength", pa.float32()), pa.field("faces", pa.int32()),
        pa.field("image", IMAGE_TYPE)], metadata={b"gankit.job": b"paste_back"})


# ----------------------------------------------------------------------------------------
# File names


def path_token(source: str) -> str:
    """A photo id as a relative path: its folders kept, anything but letters, digits and
    `._-` percent-encoded (so two ids never share a name), no empty, `.` or `..` segment."""
    def segment(s: str) -> str:
        s = quote(s, safe="._-")
        return s if s.strip(".") else s.replace(".", "%2E") or "%2F"
    return "/".join(segment(s) for s in source.split("/"))


def boundary_token(boundary: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", boundary)


def strength_token(strength: float) -> str:
    """The shortest text that reads back as the float32 strength, signed: '+3', '-0.5'."""
    s = np.float32(strength)
    return ("-" if s < 0 else "+") + np.format_float_positional(abs(s), trim="-")


def output_path(source: str, boundary: str, strength: float, fmt: str) -> str:
    """photos/<photo id>__<boundary>_<strength>.<format>, relative to the output."""
    ext = {"jpeg": "jpg"}.get(fmt, fmt)
    return (f"{PHOTOS_DIR}/{path_token(source)}__{boundary_token(boundary)}_"
            f"{strength_token(strength)}.{ext}")


# ----------------------------------------------------------------------------------------
# Checks and the plan (driver)


def first_schema(store: Store) -> Optional[pa.Schema]:
    parts = store.list_parts()
    return storage.part_footer(store, next(iter(parts.values())))[0] if parts else None


def input_problem(name: str, store: Store, needs: tuple, what: str) -> Optional[str]:
    """Why `store` cannot be paste-back's `name` input (the columns it lacks), or None."""
    schema, job = first_schema(store), (storage.read_manifest(store) or {}).get("job")
    made_by = f" (a '{job}' output)" if job else ""
    if schema is None:
        return f"{name} {store.url}{made_by} holds no part files"
    missing = [c for c in needs if c not in schema.names]
    if "image" not in missing and "image" in needs:
        from jobs.image_inputs import is_image_struct
        if not is_image_struct(schema.field("image").type):
            missing.append("image (an image struct)")
    if missing:
        hint = " (edits of sampled latents have no photo)" if job == "edit" and \
            "sample_id" in schema.names else ""
        return (f"{name} {store.url}{made_by} has no {', '.join(missing)} column, which "
                f"{what} has{hint}")
    if name == "aligned" and job != "align":
        return f"aligned {store.url}{made_by} is not a `gankit align` output"
    return None


def check_inputs(edits: Store, aligned: Store, blend: str) -> None:
    """Each input has the columns paste-back needs; else one sentence naming each bad one."""
    needs = ALIGNED_COLUMNS + (("landmarks",) if blend == "face" else ())
    problems = [p for p in (
        input_problem("edits", edits, EDIT_COLUMNS, "an edit output of aligned faces"),
        input_problem("aligned", aligned, needs, "an align output")) if p]
    if problems:
        raise ValueError(f"paste-back cannot use its inputs: {'; '.join(problems)}")


def complete_manifest(store: Store, name: str) -> dict:
    manifest = storage.read_manifest(store) or {}
    require(manifest.get("status") == "complete", name,
            f"{store.url} is not a complete job output (its manifest says "
            f"{manifest.get('status', 'nothing')}): rerun the job that writes it first")
    return manifest


def same_location(url: Optional[str], store: Store) -> bool:
    if not url:
        return False
    try:
        other = Store(url, store.options, probe=False)
    except storage.StoreError:
        return False
    return other.fs.unstrip_protocol(other.root) == store.fs.unstrip_protocol(store.root)


def lineage(edits: Store, edit_manifest: dict, aligned: Store) -> bool:
    """Whether the edits' latents are an inversion of `aligned` itself (their manifests say
    so): then edit part k holds faces of aligned part k only."""
    latents = (edit_manifest.get("config") or {}).get("latents")
    if edit_manifest.get("job") != "edit" or not latents:
        return False
    try:
        inverted = storage.read_manifest(Store(latents, edits.options, probe=False)) or {}
    except (OSError, ValueError):
        return False
    return inverted.get("job") == "invert" and same_location(
        (inverted.get("config") or {}).get("images"), aligned)


def id_hashes(ids: list) -> np.ndarray:
    """int64 hashes of string ids (Python's hash: the same within the driver process)."""
    return np.fromiter((hash(str(i)) for i in ids), dtype=np.int64, count=len(ids))


def indexed_edit_parts(edits: Store, aligned: Store) -> dict:
    """{aligned part: [edit parts holding any of its faces]} from the `image_id` columns of
    both: a sorted array of (id hash, edit part), then a lookup per aligned part. A hash
    collision only adds a part to read: the actor matches real ids."""
    keys, owners = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for j, path in edits.list_parts().items():
        h = np.unique(id_hashes(storage.read_column(edits, path, "image_id")))
        keys.append(h)
        owners.append(np.full(h.size, j, dtype=np.int64))
    key, owner = np.concatenate(keys), np.concatenate(owners)
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    plan = {}
    for k, path in aligned.list_parts().items():
        faces = np.unique(id_hashes(storage.read_column(aligned, path, "image_id")))
        lo, hi = np.searchsorted(key, faces, "left"), np.searchsorted(key, faces, "right")
        hits = [owner[a:b] for a, b in zip(lo, hi) if b > a]
        plan[k] = sorted(set(np.concatenate(hits).tolist())) if hits else []
    return plan


def plan_edit_parts(edits: Store, edit_manifest: dict, aligned: Store, plan: list) -> tuple:
    """({aligned part: [edit parts]}, whether edit part k holds only aligned part k's faces)."""
    if lineage(edits, edit_manifest, aligned):
        have = set(edits.list_parts())
        log.info(f"[paste_back] {edits.url} edits an inversion of {aligned.url}: part k's "
                 f"edits are in edit part k")
        return {p.index: [p.index] if p.index in have else [] for p in plan}, True
    log.info(f"[paste_back] {edits.url} does not come from {aligned.url} by its manifests: "
             f"indexing the ids of both")
    return indexed_edit_parts(edits, aligned), False


def check_file_names(edit_manifest: dict) -> None:
    """Two boundaries whose names give one file name would overwrite each other's photos."""
    seen = {}
    for name in (edit_manifest.get("identity") or {}).get("boundaries") or []:
        other = seen.setdefault(boundary_token(name), name)
        require(other == name, "output", f"files: boundaries {other!r} and {name!r} give the "
                f"same file name; use --output parquet")


# ----------------------------------------------------------------------------------------
# Actor


@dataclass
class FaceRow:
    """One aligned face: where it sits in its photo."""
    face_id: str
    quad: np.ndarray                    # [4, 2] float64
    landmarks: Optional[np.ndarray]     # [68, 2] float64, or None (square blend)
    size: Optional[tuple]               # (width, height) of the photo, as align saw it


class Paster(PartWorker):
    """Ray Data callable: pastes the edited faces of whole parts of photos."""

    job = "paste_back"

    def __init__(self, cfg: dict, edit_parts: dict, lineage: bool, source: dict, out):
        super().__init__(out)
        self.cfg = PasteBackConfig(**cfg)
        self.blend = self.cfg.blend_spec()
        self.edits = Store(self.cfg.edits, self.cfg.storage, probe=False)
        self.aligned = Store(self.cfg.aligned, self.cfg.storage, probe=False)
        self.edit_parts = {int(k): v for k, v in edit_parts.items()}
        self.lineage, self.source = lineage, source     # source: align's input (its config)

    def write_part(self, spec: PartSpec) -> None:
        from jobs.image_inputs import source_photo_reader
        errors = []
        photos = self.read_faces(spec, errors)            # {photo id: [FaceRow]}
        edits = self.read_edits(spec, photos, errors)     # {face id: {(b, s): (part, row)}}
        read = source_photo_reader(self.aligned, spec, self.source, self.cfg.storage)
        images = EditImages(self.edits)
        try:
            with PartWriter(self.out, storage.part_name(spec.index), out_schema()) as w:
                rows = RowBuffer(w)
                for photo_id in photo_order(photos, edits):
                    rows.add(self.paste_photo(photo_id, photos[photo_id], edits, read,
                                              images, errors))
                    runtime.fault_point()                           # test-only fault injection
                rows.flush()
                runtime.commit_errors(self.out, spec, errors)
                w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                          "errors": len(errors)})
        finally:
            images.close()
            getattr(read, "close", lambda: None)()

    def read_faces(self, spec: PartSpec, errors: list) -> dict:
        """Aligned part `spec`'s faces grouped by photo, in part order; a face without a
        usable quad (or landmarks, for the face blend) becomes an error record."""
        path = self.aligned.path(storage.part_name(spec.index))
        if not self.aligned.fs.exists(path):
            return {}
        table = read_part(self.aligned, path, aligned_columns(self.aligned, path))
        photos = {}
        for r in table.to_pylist():
            face, why = face_row(r, self.blend.kind == "face")
            if why:
                errors.append(record(r["image_id"], why))
            else:
                photos.setdefault(str(r["source_id"]), []).append(face)
        return photos

    def read_edits(self, spec: PartSpec, photos: dict, errors: list) -> dict:
        """{face id: {(boundary, strength): (edit part, row)}} of this part's faces, from the
        ids, boundaries and strengths of the planned edit parts (no image read here)."""
        wanted = {f.face_id for faces in photos.values() for f in faces}
        found, strangers = {}, {}
        for j in self.edit_parts.get(spec.index, []):
            path = self.edits.path(storage.part_name(j))
            table = read_part(self.edits, path, ["image_id", "boundary", "strength"])
            ids, bounds, strengths = (table.column(c).to_pylist() for c in table.column_names)
            for row, (face, b, s) in enumerate(zip(ids, bounds, strengths)):
                if face not in wanted:
                    strangers.setdefault(face, j)
                elif self.selected(s):
                    found.setdefault(face, {}).setdefault((b, float(s)), (j, row))
        if self.lineage:       # edit part k comes from aligned part k: others are strangers
            errors += [record(face, f"an edit row whose face is not in part {spec.index} "
                                    f"of {self.cfg.aligned} (no quad to paste it by)")
                       for face in strangers]
        for face in sorted(wanted - set(found)):
            errors.append(record(face, f"no edit rows in {self.cfg.edits}{self.at()} (its "
                                       f"inversion failed, or the edit stopped before it)"))
        return found

    def selected(self, strength) -> bool:
        return self.cfg.strengths is None or bool(np.isclose(strength,
                                                             self.cfg.strengths).any())

    def at(self) -> str:
        return "" if self.cfg.strengths is None else \
            f" at strengths {', '.join(f'{s:g}' for s in self.cfg.strengths)}"

    def paste_photo(self, photo_id: str, faces: list, edits: dict, read, images,
                    errors: list) -> list:
        """The output rows of one photo: each (boundary, strength) of its faces' edits, every
        face that has it pasted into one copy of the photo."""
        faces = [f for f in faces if f.face_id in edits]
        if not faces:
            return []
        photo, why = self.photo(photo_id, read, faces[0].size)
        if why:
            errors.append(record(photo_id, why))
            return []
        rows = []
        for boundary, strength in edit_pairs(faces, edits):
            pasted = []
            for f in faces:
                image, why = edit_image(images, edits[f.face_id].get((boundary, strength)))
                if why:
                    errors.append(record(f.face_id, f"{boundary} at {strength:g}: {why}"))
                else:
                    pasted.append((image, f.quad, f.landmarks))
            if pasted:
                rows.append(self.output_row(photo_id, photo, pasted, boundary, strength))
        return rows

    def photo(self, photo_id: str, read, size: Optional[tuple]) -> tuple:
        """(the photo [H, W, 3] uint8 as align decoded it, None), or (None, why)."""
        from gankit.images import decode_image
        data, why = read(photo_id)
        if why:
            return None, why
        try:
            photo = decode_image(data)
        except ValueError as e:
            return None, f"its photo: {e}"
        if size is not None and (photo.shape[1], photo.shape[0]) != size:
            return None, (f"its photo is {photo.shape[1]}x{photo.shape[0]} where align saw "
                          f"{size[0]}x{size[1]} (changed since it was aligned?)")
        return photo, None

    def output_row(self, photo_id: str, photo: np.ndarray, pasted: list, boundary: str,
                   strength: float) -> dict:
        from gankit.faces import paste_faces
        from gankit.images import encode_image
        cfg = self.cfg
        data = encode_image(paste_faces(photo, pasted, self.blend), cfg.image_format,
                            cfg.image_quality)
        path = output_path(photo_id, boundary, strength, cfg.image_format)
        if cfg.output in ("files", "both"):
            self.out.write_bytes(path, data)
        return {"source_id": photo_id, "boundary": boundary, "strength": strength,
                "faces": len(pasted), "image": {
                    "bytes": data if cfg.output in ("parquet", "both") else None,
                    "path": path}}


def read_part(store: Store, path: str, columns: list) -> pa.Table:
    """Some columns of one part file (ids, quads: no images)."""
    pf = storage.open_parquet(store, path)
    try:
        return pf.read(columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise storage.damaged_part(path, 0, e) from None
    finally:
        pf.close()


def aligned_columns(aligned: Store, path: str) -> list:
    names = storage.part_footer(aligned, path)[0].names
    wanted = ["image_id", "source_id", "quad", "landmarks", "source_width", "source_height"]
    return [c for c in wanted if c in names]


def face_row(r: dict, landmarks_needed: bool) -> tuple:
    """(FaceRow, None) from an aligned row, or (None, why it cannot be pasted)."""
    quad = np.asarray(r.get("quad") or [], dtype=np.float64)
    if quad.size != 8 or not np.isfinite(quad).all():
        return None, "the aligned face has no quad (its place in the photo)"
    lm = r.get("landmarks")
    lm = np.asarray(lm, dtype=np.float64) if lm is not None else None
    if landmarks_needed and (lm is None or lm.size != 136 or not np.isfinite(lm).all()):
        return None, "the aligned face has no 68 landmarks for the face blend (blend square)"
    size = (r["source_width"], r["source_height"]) if r.get("source_width") else None
    return FaceRow(str(r["image_id"]), quad.reshape(4, 2),
                   lm.reshape(68, 2) if lm is not None and lm.size == 136 else None, size), None


def record(row_id: str, reason: str) -> dict:
    return {"id": str(row_id), "stage": "paste_back", "reason": reason}


def photo_order(photos: dict, edits: dict) -> list:
    """Photos in the order of their first edit row, so edit images are read in file order."""
    def first(photo_id):
        rows = [pos for f in photos[photo_id] for pos in edits.get(f.face_id, {}).values()]
        return min(rows) if rows else (-1, -1)
    return sorted(photos, key=first)


def edit_pairs(faces: list, edits: dict) -> list:
    """The (boundary, strength) pairs any of the faces has, in edit-row order."""
    first = {}
    for f in faces:
        for pair, pos in edits[f.face_id].items():
            first[pair] = min(first.get(pair, pos), pos)
    return sorted(first, key=first.get)


def edit_image(images, pos: Optional[tuple]) -> tuple:
    """(the edited face [R, R, 3] uint8, None), or (None, why) for a missing or bad one."""
    from gankit.images import decode_image
    if pos is None:
        return None, "this face has no such edit row while others of its photo do"
    item = images.row(*pos) or {}
    if not item.get("bytes"):
        return None, "its edit row holds no image bytes"
    try:
        return decode_image(item["bytes"]), None
    except ValueError as e:
        return None, f"its edit image: {e}"


class EditImages:
    """The `image` of edit rows by (part, row), one RowReader per edit part read."""

    def __init__(self, edits: Store):
        self.edits, self.readers = edits, {}

    def row(self, part: int, row: int) -> Optional[dict]:
        if part not in self.readers:
            self.readers[part] = storage.RowReader(
                self.edits, self.edits.path(storage.part_name(part)), ["image"])
        return self.readers[part].row(row)["image"]

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


class RowBuffer:
    """Output rows written in row groups of about ROW_GROUP_BYTES or ROW_GROUP_ROWS."""

    def __init__(self, writer: PartWriter):
        self.writer, self.rows, self.bytes = writer, [], 0

    def add(self, rows: list) -> None:
        self.rows += rows
        self.bytes += sum(len(r["image"]["bytes"] or b"") for r in rows)
        if self.bytes >= ROW_GROUP_BYTES or len(self.rows) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write(pa.Table.from_pylist(self.rows, schema=out_schema()))
        self.rows, self.bytes = [], 0


# ----------------------------------------------------------------------------------------
# Driver


def run_paste_back(cfg: PasteBackConfig) -> dict:
    """Paste every (selected) edit of `cfg.edits` into its photo at `cfg.out`, one part of
    photos per actor task; returns the manifest (a JobResult)."""
    cfg.validate()
    edits = storage.open_store(cfg.edits, cfg.storage, must_exist=True)
    aligned = storage.open_store(cfg.aligned, cfg.storage, must_exist=True)
    check_inputs(edits, aligned, cfg.blend)
    align_manifest = complete_manifest(aligned, "aligned")
    edit_manifest = complete_manifest(edits, "edits")
    if cfg.output != "parquet":
        check_file_names(edit_manifest)
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    plan = [PartSpec(p["index"], p["start"], p["stop"]) for p in align_manifest["parts"]]
    edit_parts, own = plan_edit_parts(edits, edit_manifest, aligned, plan)
    source = {k: (align_manifest.get("config") or {}).get(k)
              for k in ("images", "image_column", "id_column")}
    actors = runtime.actors_for(dataclasses.replace(cfg, device="cpu"), len(plan))
    kwargs = {"cfg": config.config_dict(cfg), "edit_parts": {str(k): v for k, v in
                                                             edit_parts.items()},
              "lineage": own, "source": source}
    digest = hashlib.sha256(json.dumps(sorted(edit_parts.items())).encode()).hexdigest()
    identity = dict(cfg.identity(), photo_parts=len(plan), edit_parts=digest)
    return runtime.run_parts("paste_back", out, plan, Paster, kwargs, identity,
                             public_config(cfg), actors)
