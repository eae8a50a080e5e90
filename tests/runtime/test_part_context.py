"""What a part's loop is handed (runtime.PartContext), without Ray: the worker built in this
process as the local runner builds it.

- Each row group the part's writer writes reaches the run's progress counter, named in the
  call; error records do not count; a note reaches it too; a failing counter never fails the
  part.
- On Ray, a worker finds its run's counter actor by the run token its part names.
- The record a worker returns for the manifest is the footer its commit wrote, and equals
  what a reader reads back from the part (local and remote stores).
"""
import pyarrow as pa
import pytest

from jobs.runtime import progress
from jobs import runtime, storage
from jobs.storage import PartSpec

SCHEMA = pa.schema([("i", pa.int64())])


class Counting(runtime.PartWorker):
    """Writes rows [start, stop) in row groups of 3, and one error record per part."""

    def write_part(self, spec, part):
        with part.writer(SCHEMA) as w:
            for s in range(spec.start, spec.stop, 3):
                w.write(pa.table({"i": list(range(s, min(s + 3, spec.stop)))}, SCHEMA))
            part.note(f"rows {spec.start}-{spec.stop - 1}")
            errors = [{"id": str(spec.start), "stage": "test", "reason": "a bad row"}]
            runtime.commit_errors(self.out, spec, errors)
            w.commit({"index": spec.index, "start": spec.start, "stop": spec.stop,
                      "errors": len(errors)})


def call(worker, spec: PartSpec, counter, run: str = "run") -> dict:
    batch = {"index": [spec.index], "start": [spec.start], "stop": [spec.stop],
             "run": [run], "attempts": [3]}
    return {k: v[0] for k, v in worker(batch, counter).items()}


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_part_reports_its_rows_and_returns_the_footer_it_wrote(tmp_path, where):
    url = str(tmp_path / "out") if where == "local" else f"memory://ctx-{tmp_path.name}/out"
    out = storage.open_store(url, create=True)
    counter = progress.Counter()
    worker = Counting(out)
    reply = call(worker, PartSpec(4, 10, 18), counter)
    assert counter.rows == {4: 8}                      # 3 + 3 + 2 rows; the error record not
    assert counter.last_note == "part 00004: rows 10-17"
    read = storage.read_footer(out, out.path(storage.part_name(4))).record()
    assert {k: reply[k] for k in read} == read         # rows, errors, bytes, footer hash
    assert (read["rows"], read["errors"]) == (8, 1)


def test_a_failing_counter_is_dropped_and_the_part_still_commits(tmp_path):
    class Gone:
        calls = 0

        def add(self, index, rows):
            Gone.calls += 1
            raise ConnectionError("the driver went away")

        note = add

    out = storage.open_store(str(tmp_path / "out"), create=True)
    reply = call(Counting(out), PartSpec(0, 0, 7), Gone())
    assert Gone.calls == 1 and reply["rows"] == 7
    assert list(out.list_parts()) == [0]


def test_a_part_committed_outside_its_context_is_named():
    class Stray(runtime.PartWorker):
        def write_part(self, spec, part):
            pass

    with pytest.raises(runtime.PartFailed, match="part 00002: RuntimeError: part 00002 was "
                                                 "not committed through its context's writer"):
        call(Stray(storage.open_store("memory://ctx-stray/out", create=True)),
             PartSpec(2, 0, 1), progress.Counter())


def test_on_ray_a_worker_finds_its_runs_counter_by_the_run_token(ray_cluster, tmp_path):
    import ray
    counter = progress.start_counter("ctx-test-run")
    try:
        out = storage.open_store(str(tmp_path / "out"), create=True)
        worker = Counting(out)
        call(worker, PartSpec(1, 0, 5), None, run="ctx-test-run")
        call(worker, PartSpec(2, 5, 9), None, run="ctx-test-run")
        rows, note = ray.get(counter.snapshot.remote(), timeout=30)   # after the adds: in order
        assert rows == {1: 5, 2: 4} and note == "part 00002: rows 5-8"
        assert list(worker.counters) == ["ctx-test-run"]             # looked up once
        call(worker, PartSpec(3, 9, 10), None, run="another-run")    # no counter: no progress
        assert worker.counters["another-run"] is None
    finally:
        ray.kill(counter)


def test_an_empty_part_is_the_file_write_table_part_writes(tmp_path):
    """A part with no rows (a bad input file, an input part with none) commits the same
    bytes as before it went through the part's context."""
    class Empty(runtime.PartWorker):
        def write_part(self, spec, part):
            part.commit_empty(SCHEMA, errors=2)

    out = storage.open_store(str(tmp_path / "ctx"), create=True)
    reply = call(Empty(out), PartSpec(5, 20, 23), progress.Counter())
    before = storage.open_store(str(tmp_path / "before"), create=True)
    storage.write_table_part(before, storage.part_name(5), SCHEMA.empty_table(),
                             {"index": 5, "start": 20, "stop": 23, "errors": 2})
    name = storage.part_name(5)
    assert (tmp_path / "ctx" / name).read_bytes() == (tmp_path / "before" / name).read_bytes()
    assert (reply["rows"], reply["errors"]) == (0, 2)
