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

Blending: gankit.faces.alignment (`face`: the jaw-and-brows hull of the landmarks, dilated and
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
from dataclasses import dataclass
from typing import Optional

import numpy as np

from gankit.faces.alignment import BLENDS, Blend, paste_faces
from gankit.images import decode_image, encode_image
from jobs import config, options, runtime, storage
from jobs.config import option, public_config, require
from jobs.options import ActorOptions, ImageCodecOptions, StorageOptions
from jobs.runtime import PartWorker
from jobs.stages.paste_back_plan import (check_file_names, check_inputs, complete_manifest,
                                         plan_edit_parts)
from jobs.stages.paste_back_rows import (EditImages, RowBuffer, aligned_columns, edit_image,
                                         edit_pairs, face_row, out_schema, output_path, photo_order,
                                         read_part, record)
from jobs.storage import PartSpec, Store
from jobs.storage.source_photos import source_photo_reader

OUTPUTS = ("files", "parquet", "both")


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


# ----------------------------------------------------------------------------------------
# Actor


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

    def write_part(self, spec: PartSpec, part: runtime.PartContext) -> None:
        errors = []
        photos = self.read_faces(spec, errors)            # {photo id: [FaceRow]}
        edits = self.read_edits(spec, photos, errors)     # {face id: {(b, s): (part, row)}}
        read = source_photo_reader(self.aligned, spec, self.source, self.cfg.storage)
        images = EditImages(self.edits)
        try:
            with part.writer(out_schema()) as w:
                rows = RowBuffer(w)
                for photo_id in photo_order(photos, edits):
                    rows.add(self.paste_photo(photo_id, photos[photo_id], edits, read,
                                              images, errors))
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
