"""The paste-back stage's rows: the output's schema and file names, the aligned faces and edit
images an actor reads, and the buffer its output rows are written through (jobs.stages.paste_back
runs them)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from gankit.data import IMAGE_TYPE
from gankit.images import decode_image
from jobs import storage
from jobs.storage import PartWriter, Store

PHOTOS_DIR = "photos"                 # image files under the output: photos/<name>
ROW_GROUP_BYTES = 64 << 20            # output rows are written in groups of about this size
ROW_GROUP_ROWS = 256


def out_schema() -> pa.Schema:
    return pa.schema([
        pa.field("source_id", pa.string()), pa.field("boundary", pa.string()),
        pa.field("strength", pa.float32()), pa.field("faces", pa.int32()),
        pa.field("image", IMAGE_TYPE)], metadata={b"gankit.job": b"paste_back"})


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


@dataclass
class FaceRow:
    """One aligned face: where it sits in its photo."""
    face_id: str
    quad: np.ndarray                    # [4, 2] float64
    landmarks: Optional[np.ndarray]     # [68, 2] float64, or None (square blend)
    size: Optional[tuple]               # (width, height) of the photo, as align saw it


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
