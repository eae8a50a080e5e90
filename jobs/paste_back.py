"""`gankit paste-back`: put edited faces back into the photos they were aligned from.

    photos --align--> aligned/ (face, quad) --invert--> inverted/ --edit--> edits/
    edits/ + aligned/ + the photos --paste-back--> <out>/<photo>__<boundary>_<strength>.png

Each edited face [R, R, 3] is warped back through its FFHQ quad into the photo and blended
with a feathered square (gankit.faces.paste_back). The photos are found through the align
output: the listing of an image-file input (jobs.image_inputs.source_url_lookup), or its
Parquet dataset (read once for the faces' photos). Runs on the driver, streaming the edits
part by part; a face with no quad or photo is reported and skipped, every other edit is
written.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from jobs import config, storage
from jobs.config import option, require
from jobs.options import StorageOptions

log = logging.getLogger("gankit")


@dataclass
class PasteBackConfig(StorageOptions):
    edits: str = option("", "an edit output of inverted `gankit align` faces", required=True)
    aligned: str = option("", "the `gankit align` output those faces came from",
                          required=True)
    out: str = option("", "output folder: <photo>__<boundary>_<strength>.png per edit",
                      required=True)
    strengths: Optional[list[float]] = option(None, "the strengths to paste (default: all)")
    feather: float = option(0.1, "the pasted square fades out over this share of its side")

    def validate(self) -> None:
        for name in ("edits", "aligned", "out"):
            require(bool(getattr(self, name)), name, "must be a URL")
        require(0 <= self.feather <= 0.5, "feather", f"must be in [0, 0.5] (got {self.feather})")


def face_quads(aligned) -> dict:
    """{aligned face id: (photo id, quad [4, 2])} from the align output."""
    quads = {}
    for t in storage.iter_tables(aligned, ["image_id", "source_id", "quad"]):
        for i, source, quad in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            quads[i] = (source, np.asarray(quad, dtype=np.float64).reshape(4, 2))
    return quads


def photo_reader(aligned, sources: set, options: dict) -> Callable[[str], Optional[bytes]]:
    """photo id -> its bytes (None when it cannot be read), from the align input."""
    from jobs.image_inputs import read_url, source_url_lookup
    lookup = source_url_lookup(aligned)
    if lookup is not None:
        def read(source: str) -> Optional[bytes]:
            url = lookup(source)
            return None if url is None else read_url(url, options)
        return read
    images = ((storage.read_manifest(aligned) or {}).get("config") or {}).get("images")
    require(bool(images), "aligned", f"{aligned.url} names no input photos in its manifest")
    src = storage.open_store(images, options, must_exist=True)
    found = {}
    for t in storage.iter_tables(src):
        key = "image_id" if "image_id" in t.column_names else "sample_id"
        for i, item in zip(t.column(key).to_pylist(), t.column("image").to_pylist()):
            if str(i) in sources:
                found[str(i)] = (item or {}).get("bytes")
    return found.get


def readable_photo(data: Optional[bytes]) -> Optional[np.ndarray]:
    """The photo as align decoded it (EXIF orientation applied), or None."""
    from gankit.images import decode_image
    try:
        return decode_image(data) if data else None
    except ValueError:
        return None


def file_name(source: str, boundary: str, strength: float) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.rsplit(".", 1)[0])
    return f"{stem}__{re.sub(r'[^A-Za-z0-9._-]+', '_', boundary)}_{strength:+g}.png"


def run_paste_back(cfg: PasteBackConfig) -> dict:
    """Write every (selected) edit pasted into its photo; returns {written, skipped}."""
    from gankit.faces import paste_back
    from gankit.images import decode_image, encode_image
    cfg.validate()
    edits = storage.open_store(cfg.edits, cfg.storage, must_exist=True)
    aligned = storage.open_store(cfg.aligned, cfg.storage, must_exist=True)
    out = storage.open_store(cfg.out, cfg.storage, create=True)
    quads = face_quads(aligned)
    read = photo_reader(aligned, {s for s, _ in quads.values()}, cfg.storage)
    written, skipped, last = 0, [], (None, None)
    for t in storage.iter_tables(edits, ["image_id", "boundary", "strength", "image"]):
        for face, boundary, strength, image in zip(*(t.column(c).to_pylist()
                                                     for c in t.column_names)):
            if cfg.strengths is not None and not np.isclose(strength, cfg.strengths).any():
                continue
            if face not in quads:
                skipped.append(f"{face}: not a face of {cfg.aligned}")
                continue
            source, quad = quads[face]
            if last[0] != source:                    # edits of one photo come together
                last = (source, readable_photo(read(source)))
            if last[1] is None:
                skipped.append(f"{face}: its photo {source} cannot be read")
                continue
            pasted = paste_back(last[1], decode_image(image["bytes"]), quad, cfg.feather)
            out.write_bytes(file_name(source, boundary, strength), encode_image(pasted, "png"))
            written += 1
    summary = {"written": written, "skipped": skipped}
    out.write_bytes("paste_back.json", json.dumps(summary, indent=2).encode())
    for why in skipped[:5]:
        log.warning(f"[paste-back] skipped {why}")
    log.info(f"[paste-back] wrote {written} photos to {cfg.out}"
             + (f", skipped {len(skipped)} (paste_back.json)" if skipped else ""))
    return summary


def register(subparsers) -> None:
    config.add_stage_command(subparsers, "paste-back", "put edited faces back into the photos "
                             "they were aligned from", PasteBackConfig,
                             "jobs.paste_back:run_paste_back")
