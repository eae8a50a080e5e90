"""The part job: `PartWorker`, the actor every part-parallel stage subclasses, and `run_parts`,
the driver that plans, resumes and records it.

Execution model of a part job (sample, label, edit):

    driver:  plan = fixed list of PartSpec(index, start, stop)        (from the job config)
             missing = plan - committed parts at the output URL        (rerun = resume)
             ray.data.from_items(missing, one block per part)
               .map_batches(Worker, batch_size=1, compute=ActorPoolStrategy(size=k),
                            num_gpus=1 | num_cpus=c)
    actor:   __init__ loads the model(s) once on its device, at the job's precision;
             __call__ computes one part step by step while `cpus_per_worker` threads
             encode/decode images and write row groups (jobs.runtime.cpu_pool), commits the part
             (the writer of its PartContext), then returns only {index, rows, errors, ...}
    driver:  streams those tiny replies (progress line per part), writes _manifest.json.

Rows never travel through the driver, so its memory stays flat whatever the row count.
The local runner (ActorPlan.runner 'local') builds the same worker once in the driver's
process and feeds it the same part descriptors in plan order: the same commits, manifest,
error records, resume and progress, with no Ray.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import uuid

import numpy as np
import torch

from gankit.data import error_table
from jobs import storage
from jobs.runtime import progress
from jobs.runtime.cluster import ActorPlan
from jobs.runtime.faults import FAULT_ENV, hold_point, poison_point
from jobs.runtime.part_context import PartContext
from jobs.runtime.result import JobResult
from jobs.storage import PartSpec, RunRecord, Store

log = logging.getLogger("gankit")


def micro_batches(start: int, stop: int, size: int):
    """Row ranges of exactly `size` rows aligned to `start`; the last one may run past `stop`
    and is padded by the caller. Kernels pick their algorithm by batch shape, so every model
    call sees the same shape and the same rows: outputs do not depend on anything else."""
    for s in range(start, stop, size):
        yield s, min(s + size, stop)


def pad_rows(x, size: int):
    """Pad a [n, ...] tensor/array with zero rows to [size, ...] (n <= size)."""
    n = x.shape[0]
    if n == size:
        return x
    if isinstance(x, torch.Tensor):
        return torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))])
    return np.concatenate([x, np.zeros((size - n, *x.shape[1:]), dtype=x.dtype)])


class PartWorker:
    """Base of the per-part callable classes given to map_batches.

    A subclass loads its models once in `__init__` and implements `write_part(spec, part)`,
    which computes part `spec` and commits it with `part.writer(schema)` (PartContext: its
    row groups report progress; the manifest then records the footer the commit wrote:
    rows, errors, size and hash).
    """

    job = "job"
    batch_field = "micro_batch"     # the config field: rows one model call sees

    def __init__(self, out: Store):
        self.out = out
        self.counters: dict = {}     # run token -> its progress counter, found once

    def write_part(self, spec: PartSpec, part: PartContext) -> None:
        raise NotImplementedError

    def __call__(self, batch: dict, counter=None) -> dict:
        """One or more part descriptors -> their footer records. `counter`: the run's
        progress.Counter, handed over by the local runner; an actor finds its run's."""
        reply = {"index": [], "rows": [], "errors": [], "bytes": [], "footer_sha256": []}
        for k, s, e, run, attempts in zip(batch["index"], batch["start"], batch["stop"],
                                          batch["run"], batch["attempts"]):
            spec = PartSpec(int(k), int(s), int(e))
            sink = progress.PartProgress(counter or self.run_counter(str(run)), spec.index)
            part = PartContext(self.out, spec, sink)
            try:
                self.start(spec, str(run), int(attempts))
                self.write_part(spec, part)
                record = part.footer().record()                  # for the manifest
            except PartFailed:
                raise
            except Exception as err:       # one line the driver can quote (see root_cause)
                msg = " ".join(str(err).split())[:400]
                if type(err).__name__ == "OutOfMemoryError":     # torch.cuda's
                    msg = self.out_of_memory()
                raise PartFailed(f"part {spec.index:05d}: {type(err).__name__}: {msg}") from err
            reply["index"].append(spec.index)
            for key, value in record.items():
                reply[key].append(value)
        return {k: np.asarray(v) for k, v in reply.items()}

    def run_counter(self, run: str):
        """Run `run`'s progress counter on the Ray cluster, looked up once per run."""
        if run not in self.counters:
            self.counters[run] = progress.find_counter(run)
        return self.counters[run]

    def start(self, spec: PartSpec, run: str, attempts: int) -> None:
        """Count this start of the part; past `attempts` starts its workers all died on it."""
        starts = start_attempt(self.out, run, spec.index)
        if starts > attempts:
            raise PartFailed(f"part {spec.index:05d}: its worker died on each of its "
                             f"{starts - 1} starts in this run (a crashing native library or "
                             f"classifier, or a row that crashes one?); a rerun tries it again")
        poison_point(spec.index)
        hold_point(spec.index)

    def fits(self, m: int) -> bool:
        """Whether one model call on m rows fits the device; stages that can try one
        override this (a GPU out-of-memory sentence then names the size that fits)."""
        return False

    def out_of_memory(self) -> str:
        """One sentence for a GPU out-of-memory error: the batch field, and the largest
        halving of it that fits (tried on the spot), if any does."""
        field = self.batch_field
        m = getattr(self.cfg, field)
        torch.cuda.empty_cache()
        flag = "--" + field.replace("_", "-")
        smaller = [m >> i for i in range(1, m.bit_length())]
        if type(self).fits is PartWorker.fits:          # this stage cannot try a size
            found = f"rerun with a smaller {flag}"
        else:
            fit = next((k for k in smaller if self._fits(k)), None)
            found = (f"{field}={fit} fits: rerun with {flag} {fit}" if fit
                     else f"no smaller {field} fits either")
        return (f"the GPU ran out of memory at {field}={m}; {found} (outputs depend on "
                f"{field}, so a location with committed parts needs a new output URL)")

    def _fits(self, m: int) -> bool:
        try:
            with torch.no_grad():
                return self.fits(m)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return False


def commit_errors(out: Store, spec: PartSpec, records: list) -> None:
    """Commit part `spec`'s error records (before the part itself), if it has any."""
    if not records:
        return
    storage.write_table_part(out, f"{storage.ERRORS_DIR}/{storage.part_name(spec.index)}",
                             error_table(records), {"index": spec.index, "errors": len(records)})


# Actor faults (a preempted machine, an OOM kill): Ray Data's actor pool restarts a dead actor
# and retries its part on it (its defaults: max_restarts=-1, max_task_retries=-1; Ray 2.60
# deprecates passing them explicitly). The part was never committed, so nothing is lost or
# doubled. A part that kills every actor it lands on would be retried without end, so each
# start leaves a marker under _attempts/<run token>/ (in the output store, where every actor
# sees it): a start past ActorOptions.part_attempts stops the job naming the part. A start on
# a node the cluster has since lost (a reclaimed spot machine) does not count: the node died,
# not the part. The markers are cleared when a run begins and when it ends (the run holds the
# lease).
ATTEMPTS_DIR = "_attempts"


def start_attempt(out: Store, run: str, index: int) -> int:
    """Record a start of part `index` in run `run` (marker `<index>.<node id>.<random>`);
    returns the starts that count against part_attempts: this one, and each earlier one
    made on a node that is still alive."""
    out.makedirs(ATTEMPTS_DIR, run)
    node = current_node()
    out.write_bytes(f"{ATTEMPTS_DIR}/{run}/{index:05d}.{node}.{uuid.uuid4().hex[:12]}", b"")
    out.invalidate()
    names = [name.rsplit("/", 1)[-1] for name in
             out.fs.ls(out.path(ATTEMPTS_DIR, run), detail=False)]
    nodes = [name.split(".")[1] for name in names if name.startswith(f"{index:05d}.")]
    lost = lost_nodes() if len(nodes) > 1 else set()    # asks the cluster on restarts only
    return sum(n not in lost for n in nodes)


def current_node() -> str:
    """The Ray node id of this process ('local' outside Ray: the local runner never
    imports it)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return "local"
    return ray.get_runtime_context().get_node_id()


def lost_nodes() -> set:
    """Ids of the nodes the Ray cluster has seen die."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return set()
    return {n["NodeID"] for n in ray.nodes() if not n.get("Alive")}


def clear_attempts(out: Store) -> None:
    try:
        out.fs.rm(out.path(ATTEMPTS_DIR), recursive=True)
    except FileNotFoundError:
        pass


def worker_remote_args(actors: ActorPlan) -> dict:
    """map_batches resources of the part actors (+ the test-only fault variables, if set)."""
    args = {"num_gpus": actors.num_gpus, "num_cpus": actors.num_cpus}
    env = {k: os.environ[k] for k in FAULT_ENV if os.environ.get(k)}
    if env:
        args["runtime_env"] = {"env_vars": env}
    return args


def run_parts(job: str, out: Store, plan: list, worker_cls, worker_kwargs: dict,
              identity: dict, config: dict, actors: ActorPlan) -> dict:
    """Compute the parts of `plan` not yet committed at `out`; returns the manifest, as a
    JobResult (a dict that also opens the output).
    Holds the output's lease (storage.JobLease) throughout: a second job writing to the
    same location at the same time fails fast with storage.LeaseHeld."""
    with storage.JobLease(out, job):
        manifest = _run_parts(job, out, plan, worker_cls, worker_kwargs, identity, config,
                              actors)
    return JobResult(manifest, out.url, out.options)


def _run_parts(job: str, out: Store, plan: list, worker_cls, worker_kwargs: dict,
               identity: dict, config: dict, actors: ActorPlan) -> dict:
    old = storage.check_identity(out, job, identity)
    removed = out.remove_temporaries()
    clear_attempts(out)
    wanted = {p.index for p in plan}
    committed = {k: p for k, p in out.list_parts().items() if k in wanted}
    committed, set_aside = storage.set_aside_damaged(out, committed, old)
    for sentence in set_aside:
        log.warning(f"[{job}] {sentence}")
    missing = [p for p in plan if p.index not in committed]
    run = RunRecord(reused=sorted(committed), computed=[p.index for p in missing])
    metas = storage.footer_metas(out, committed)
    runs = (old or {}).get("runs", []) + [run]
    schema = storage.part_footer(out, next(iter(committed.values())))[0] if committed else None
    storage.write_manifest(out, job, identity, config, plan, metas, schema, runs, False)
    note = f", removed {removed} temporary files" if removed else ""
    where = "in this process (local runner)" if actors.runner == "local" else \
        f"on {min(actors.workers, len(missing))} {'GPU' if actors.num_gpus else 'CPU'} actor(s)"
    log.info(f"[{job}] {out.url}: {len(plan)} parts, {len(committed)} already committed, "
             f"{len(missing)} to compute {where}{note}")
    if missing:
        compute_parts(job, out, plan, missing, worker_cls, dict(worker_kwargs, out=out),
                      actors, metas)
    if schema is None and metas:
        first = out.list_parts()
        schema = storage.part_footer(out, next(iter(first.values())))[0] if first else None
    out.remove_temporaries()        # left by actors that died mid-part (then retried)
    clear_attempts(out)
    run.finished = storage.now()
    manifest = storage.write_manifest(out, job, identity, config, plan, metas, schema, runs,
                                      True)
    log.info(f"[{job}] done: {manifest['rows']} rows, {manifest['errors']} errors in "
             f"{len(manifest['parts'])} parts at {out.url}")
    return manifest


def compute_parts(job: str, out: Store, plan: list, missing: list, worker_cls, kwargs: dict,
                  actors: ActorPlan, metas: dict) -> None:
    """Run the missing parts on an actor pool, or in this process (the local runner); each
    reply's footer record goes in `metas`. A worker's failure stops the job with one
    sentence (WorkerFailed)."""
    run_token = uuid.uuid4().hex      # names this run's start markers and progress counter
    items = [{"index": p.index, "start": p.start, "stop": p.stop, "run": run_token,
              "attempts": actors.attempts} for p in missing]
    local = actors.runner == "local"
    done = len(plan) - len(missing)
    rows = {p.index: p.rows for p in missing}
    try:
        with progress.Progress(job, run_token, rows, sum(metas[k]["rows"] for k in metas),
                               local=local) as bar:
            replies = local_replies(worker_cls, kwargs, items, bar.counter) if local else \
                actor_replies(worker_cls, kwargs, items, actors)
            for reply in replies:
                k = int(reply["index"][0])
                metas[k] = {"rows": int(reply["rows"][0]), "errors": int(reply["errors"][0]),
                            "bytes": int(reply["bytes"][0]),
                            "footer_sha256": str(reply["footer_sha256"][0])}
                bar.committed(k)
                done += 1
                log.debug(f"[{job}] part {k:05d} committed: {metas[k]['rows']} rows, "
                          f"{metas[k]['errors']} errors ({done}/{len(plan)} parts)")
    except Exception as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise WorkerFailed(f"{job} job writing to {out.url} failed in a worker: "
                           f"{root_cause(e)} ({done}/{len(plan)} parts committed; "
                           f"a rerun computes only the others)") from e


def actor_replies(worker_cls, kwargs: dict, items: list, actors: ActorPlan):
    """The parts' replies from a pool of actors, as each part commits (any order)."""
    import ray
    actors = dataclasses.replace(actors, workers=min(actors.workers, len(items)))
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        worker_cls, fn_constructor_kwargs=kwargs, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors.workers), **worker_remote_args(actors))
    return ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=0)


def local_replies(worker_cls, kwargs: dict, items: list, counter):
    """The parts' replies from one worker built in this process, in plan order; it reports
    its progress to `counter` (progress.Counter)."""
    worker = worker_cls(**kwargs)
    try:
        for item in items:
            yield worker({key: [value] for key, value in item.items()}, counter)
    finally:
        pool = getattr(worker, "pool", None)
        if pool is not None:             # an actor's codec threads die with it; these not
            pool.close()


class PartFailed(RuntimeError):
    """Raised in a worker: 'part 00003: Type: message' on one line."""


class WorkerFailed(RuntimeError):
    """A part job stopped because a worker raised: one sentence naming the output URL and
    the root cause (the Ray traceback stays in __cause__)."""


def root_cause(e: BaseException) -> str:
    """The worker's one-line PartFailed message inside a Ray error, else 'Type: last line
    of the message' of the innermost cause."""
    if isinstance(e, PartFailed):             # raised in this process (the local runner)
        return str(e)[:500]
    m = re.findall(r"PartFailed: (part \d{5}: [^\n]*)", str(e))
    if m:
        return m[-1].strip()[:500]
    # an actor whose constructor raised (a model that cannot be loaded): Ray's error holds
    # the worker's traceback as text, its last 'module.SomeError: message' line says why
    raised = re.findall(r"^(?:[A-Za-z_][\w.]*\.)?(\w+(?:Error|Exception)): (\S[^\n]*)$",
                        str(e), re.M)
    if raised:
        return ": ".join(raised[-1])[:500]
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        nxt = getattr(e, "cause", None)
        nxt = nxt if isinstance(nxt, BaseException) else (e.__cause__ or e.__context__)
        if nxt is None:
            break
        e = nxt
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1].strip() if lines else ''}"[:500]

