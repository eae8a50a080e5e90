"""What a job's run function returns: its manifest, and the way to open its output.

    result = run_sample(SampleConfig(model="toy", count=1000, out="samples"))
    result["rows"], result.manifest      # the manifest (a dict, as before)
    result.to_pandas()                   # the rows, read part by part (small outputs)
    result.dataset()                     # a Ray Data dataset over the parts (any size)
"""
from __future__ import annotations

from typing import Optional

from jobs import storage
from jobs.runtime.ray_session import ensure_ray


class JobResult(dict):
    """The manifest of a finished part job (a dict) that can open the job's output."""

    def __init__(self, manifest: dict, url: str, options: Optional[dict] = None):
        super().__init__(manifest)
        self.url, self.options = url, dict(options or {})

    @property
    def manifest(self) -> dict:
        return dict(self)

    def to_arrow(self, columns: Optional[list] = None):
        return storage.read_table(storage.open_store(self.url, self.options), columns)

    def to_pandas(self, columns: Optional[list] = None):
        return self.to_arrow(columns).to_pandas()

    def dataset(self, columns: Optional[list] = None):
        """The output as a Ray Data dataset (its part files only; starts Ray if needed)."""
        import ray  # only here: the local runner runs without Ray
        ensure_ray()
        store = storage.open_store(self.url, self.options)
        paths = list(store.list_parts().values())
        fs = store.fs
        return ray.data.read_parquet(paths, filesystem=fs, columns=columns)

    def __repr__(self) -> str:
        return (f"JobResult({self.get('job')!r} at {self.url!r}: {self.get('rows')} rows, "
                f"{self.get('errors')} errors, {self.get('status')})")
