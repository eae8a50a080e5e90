"""The photos behind an output made from image inputs (align's): what paste-back reads to
put edited faces back into them. Image files come from the URLs of the listing that output
keeps (jobs.storage.listing), under the boundary their job read them with (follow_links); a Parquet
input's photos from its file, a row group at a time.
"""
from __future__ import annotations

from typing import Optional

from jobs import storage
from jobs.storage import PartSpec, Store, listing
from jobs.storage.file_entries import input_folder
from jobs.storage.image_inputs import input_parts, pick_id_column
from jobs.storage.image_reading import (no_bytes_reason, read_relative, read_url, remember,
                                        url_options)

_LEGACY: dict = {}      # per process: {(output URL, size): an older output's _inputs.json}


def part_source_urls(out: Store, spec: PartSpec) -> Optional[dict]:
    """{photo id: URL} of the image files behind part `spec` of an output made from image
    files (align's): rows [spec.start, spec.stop) of the listing it keeps, read from the
    shards that hold them (an older output's `_inputs.json` whole, once per process). None
    when that job read a Parquet dataset."""
    index = listing.read_index(out)
    if index is not None:
        rows = listing.listing_of(out, index).read(spec.start, spec.stop)
        return dict(zip(rows.column("image_id").to_pylist(), rows.column("url").to_pylist()))
    if not out.exists(listing.LEGACY):
        return None
    key = (out.url, out.fs.size(out.path(listing.LEGACY)))
    if key not in _LEGACY:
        _LEGACY[key] = out.read_json(listing.LEGACY)["files"]
    return {str(i): url for i, url in _LEGACY[key][spec.start:spec.stop]}


def source_photo_reader(out: Store, spec: PartSpec, source: dict, options: dict):
    """photo id -> (bytes, None) or (None, why), for the photos behind part `spec` of an
    output made from image inputs. `source`: that job's `images`, `image_column` and
    `id_column` (its manifest's config). Image files come from their URLs; a Parquet input's
    photos from its file `spec.index`, each row group read when one of its photos is asked."""
    src = Store(source["images"], options, probe=False)
    follow_links = bool(source.get("follow_links"))
    urls = part_source_urls(out, spec)
    if urls is not None:
        folder = input_folder(src, follow_links)

        def read_file(photo_id: str) -> tuple:
            url = urls.get(photo_id)
            if url is None:
                return None, f"{photo_id} is not among the files of part {spec.index} of " \
                             f"{source['images']}"
            data, why = read_url(url, url_options(url, src), folder)
            if data:
                return data, None
            return None, f"its photo {url} cannot be read ({why or 'no bytes'})"
        return read_file
    return ParquetPhotos(src, spec.index, source.get("image_column") or "image",
                         source.get("id_column"), follow_links)


class ParquetPhotos:
    """photo id -> (bytes, None) or (None, why) from one file of a Parquet image dataset."""

    def __init__(self, src: Store, index: int, image_column: str, id_column: Optional[str],
                 follow_links: bool = False):
        self.src, self.image_column, self.follow_links = src, image_column, follow_links
        self.path = input_parts(src).get(index)
        self.rows, self.reader = {}, None
        if self.path is None:
            return
        self.reader = storage.RowReader(src, self.path, [image_column])  # one open of the file
        id_name = pick_id_column(self.reader.pf.schema_arrow, id_column, src.url)
        self.rows = {str(i): r for r, i in enumerate(self.reader.column(id_name))}

    def __call__(self, photo_id: str) -> tuple:
        if photo_id not in self.rows:
            return None, f"{photo_id} is not a row of {self.path or self.src.url}"
        item = self.reader.row(self.rows[photo_id])[self.image_column] or {}
        data = item.get("bytes")
        if not data and item.get("path"):           # read from its path, as align did
            data, why = read_relative(self.src, item["path"], self.follow_links)
            if why is not None:
                remember(item["path"], why)
        return (data, None) if data else (None, no_bytes_reason(dict(item, bytes=data)))

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
