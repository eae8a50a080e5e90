"""Paste-back throughput per CPU actor, and the driver's cost of indexing edits, side by side.

Setup (not timed): N copies of scikit-image's astronaut (512 x 512; with --faces all dlib
boxes her head and a patch of the suit: 2 faces a photo) -> align at the toy generator's
32 px -> invert (toy encoder, 0 steps) -> edit along one random W boundary at 3 strengths.
Then, in this process and one thread, the paste_back actor's own loop
(jobs.stages.paste_back.Paster, what each CPU actor runs on its parts) for each blend and output
kind: photos per second and output photos per second (one per photo, boundary and strength).
`--ray` adds the whole stage through `run_paste_back` on one actor (Ray start-up included).

`--index-faces F` times the driver's id index (`indexed_edit_parts`, used when the edits'
manifests do not chain to the align output) on id-only datasets: F faces in aligned parts of
256 photos (2 faces each), 9 edit rows per face; seconds per edit row and the index's peak
Python memory (tracemalloc), to scale to a million photos.

    python benchmarks/bench_paste_back.py --photos 24 --ray --index-faces 200000
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def astronaut_bytes() -> bytes:
    root = importlib.util.find_spec("skimage").submodule_search_locations[0]
    with open(os.path.join(root, "data", "astronaut.png"), "rb") as f:
        return f.read()


def prepare(root: str, photos: int) -> None:
    """photos/ -> aligned/ -> inverted/ -> edits/ under `root` (the toy model)."""
    import numpy as np

    from gankit.loading import zoo
    from gankit.latent.boundaries import Boundary
    from jobs.stages.align import AlignConfig, run_align
    from jobs.stages.edit import EditConfig, run_edit
    from jobs.stages.invert import InvertConfig, run_invert
    os.makedirs(f"{root}/photos")
    data = astronaut_bytes()
    for i in range(photos):
        with open(f"{root}/photos/p{i:04d}.png", "wb") as f:
            f.write(data)
    normal = np.random.default_rng(0).standard_normal(zoo.load_generator("toy").w_dim)
    Boundary(attribute="x", space="w", normal=normal / np.linalg.norm(normal),
             intercept=0.0).save(f"{root}/w_x.npz")
    run_align(AlignConfig(images=f"{root}/photos", out=f"{root}/aligned", resolution=32,
                          faces="all", images_per_part=8))
    run_invert(InvertConfig(images=f"{root}/aligned", out=f"{root}/inverted", model="toy",
                            mode="encode", space="wp", steps=0))
    run_edit(EditConfig(latents=f"{root}/inverted", out=f"{root}/edits", model="toy",
                        boundaries=[f"{root}/w_x.npz"], strengths=[-3.0, 0.0, 3.0],
                        classifier="", device="cpu"))


def actor_rate(root: str, blend: str, output: str) -> tuple:
    """(photos/s, output photos/s) of one Paster over every part, in this thread."""
    from jobs import config, storage
    from jobs.stages.paste_back import PasteBackConfig, Paster
    from jobs.stages.paste_back_plan import plan_edit_parts
    from jobs.storage import PartSpec
    out = f"{root}/out-{blend}-{output}"
    cfg = PasteBackConfig(edits=f"{root}/edits", aligned=f"{root}/aligned", out=out,
                          blend=blend, output=output)
    aligned, edits = (storage.open_store(u) for u in (cfg.aligned, cfg.edits))
    manifest = storage.read_manifest(aligned)
    plan = [PartSpec(p["index"], p["start"], p["stop"]) for p in manifest["parts"]]
    parts, own = plan_edit_parts(edits, storage.read_manifest(edits), aligned, plan)
    source = {k: manifest["config"].get(k) for k in ("images", "image_column", "id_column")}
    worker = Paster(config.config_dict(cfg), {str(k): v for k, v in parts.items()}, own,
                    source, storage.open_store(out, create=True))
    start = time.perf_counter()
    for spec in plan:
        worker.write_part(spec)
    seconds = time.perf_counter() - start
    rows = storage.dataset_rows(storage.open_store(out))[0]
    return sum(p.rows for p in plan) / seconds, rows / seconds


def stage_rate(root: str) -> float:
    """Photos/s of `run_paste_back` on one CPU actor, Ray start-up and planning included."""
    from jobs.stages.paste_back import PasteBackConfig, run_paste_back
    start = time.perf_counter()
    manifest = run_paste_back(PasteBackConfig(edits=f"{root}/edits",
                                              aligned=f"{root}/aligned",
                                              out=f"{root}/out-stage", workers=1))
    seconds = time.perf_counter() - start
    return sum(p["stop"] - p["start"] for p in manifest["parts"]) / seconds


def index_cost(root: str, faces: int) -> tuple:
    """(seconds, seconds per edit row, peak MiB) of indexed_edit_parts on id-only parts."""
    import tracemalloc

    import pyarrow as pa

    from jobs import storage
    from jobs.stages.paste_back import indexed_edit_parts
    per_part = 512                                     # 256 photos x 2 faces
    aligned = storage.open_store(f"{root}/idx-aligned", create=True)
    edits = storage.open_store(f"{root}/idx-edits", create=True)
    for k, s in enumerate(range(0, faces, per_part)):
        ids = [f"photos/{(i // 2):08d}.jpg#{i % 2}" for i in range(s, min(s + per_part, faces))]
        name = storage.part_name(k)
        storage.write_table_part(aligned, name, pa.table({"image_id": ids}), {"index": k})
        storage.write_table_part(edits, name, pa.table({"image_id": [i for i in ids
                                                                     for _ in range(9)]}),
                                 {"index": k})
    tracemalloc.start()
    start = time.perf_counter()
    plan = indexed_edit_parts(edits, aligned)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert all(plan[k] == [k] for k in plan)
    return seconds, seconds / (9 * faces), peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=24)
    p.add_argument("--ray", action="store_true", help="also time the stage on one actor")
    p.add_argument("--index-faces", type=int, default=0, help="also time the driver's index")
    p.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = p.parse_args()
    import ray

    from jobs import console
    console.command_line("quiet")
    root = args.keep or tempfile.mkdtemp(prefix="bench-paste-")
    shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    try:
        prepare(root, args.photos)
        print(f"{args.photos} photos (512 x 512, 2 faces each), 3 edits a face, toy 32 px")
        print("| blend | output | photos/s per actor | output photos/s |")
        print("| --- | --- | --- | --- |")
        for blend, output in (("face", "files"), ("square", "files"), ("face", "parquet")):
            photos, outputs = actor_rate(root, blend, output)
            print(f"| {blend} | {output} | {photos:.1f} | {outputs:.1f} |")
        if args.ray:
            print(f"stage on one actor (Ray start-up included): {stage_rate(root):.1f} photos/s")
        if args.index_faces:
            seconds, per_row, peak = index_cost(root, args.index_faces)
            print(f"index of {args.index_faces} faces, {9 * args.index_faces} edit rows: "
                  f"{seconds:.1f} s ({per_row * 1e6:.2f} us per edit row), peak {peak:.0f} MiB")
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
