#!/usr/bin/env bash
# Check gankit at real scale on an OFFLINE GPU machine, and record every figure and log.
#
#   benchmarks/gpu_check.sh OUT [--device cuda|cpu] [--bundle DIR] [--python PY]
#                               [--skip-bench] [--skip-run] [--bench-args "ARGS"] [--with-s3]
#
# The GPU machine is expected to have Python 3.12 with torch (CUDA), pyarrow, pandas, fsspec,
# scikit-learn, pillow, safetensors, matplotlib and tqdm, but no Ray, s3fs or jsonschema and
# no network. --bundle names a folder made by benchmarks/make_gpu_bundle.sh on a connected
# machine (copy it over beside the repository). This script then:
#   1. records the environment (OUT/environment.txt, nvidia-smi);
#   2. installs what is missing, offline: the bundle's wheels with
#      `pip install --no-index --find-links` (into the running Python's environment, or into
#      OUT/deps/site when that environment is read-only), and the stripped Ray unpacked into
#      OUT/deps/site, which joins PYTHONPATH (Ray's workers inherit it); with --with-s3
#      also s3fs (only s3:// URLs need it; its botocore pins python-dateutil < 3, which may
#      downgrade the environment's copy, so it is opt-in);
#   3. makes gankit importable with PYTHONPATH=<repo root> (nothing is installed);
#   4. runs benchmarks/bench_scale.py (OUT/bench/: bench_scale.json, .md, .log) and
#      benchmarks/precision_tolerance.py (OUT/bench/precision_tolerance.log) and
#      benchmarks/bench_encoders.py (OUT/bench/bench_encoders.json, .log);
#   5. runs a small `gankit run` pipeline on the device through Ray (OUT/run/): a random-
#      weight FFHQ config-f generator (1024 px), sample 2,000 rows with JPEG images and
#      classifier labels, fit W boundaries, edit 64 rows, report; then invert 16 of the
#      sampled images in W+ for 100 steps (a second config: the invert stage reads an image
#      dataset, here the first 16 rows of the sample stage's output);
#   6. writes OUT/summary.md: the benchmark table and, per stage, rows, parts, errors and time.
# Everything printed also goes to OUT/gpu_check.log.
#
# --device cpu runs the same steps at toy sizes (toy model, tiny counts, bench --quick), so
# the script can be tested on a CPU machine. PYTHON=... or --python picks the interpreter
# (default python3).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "gpu_check: ERROR: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="" DEVICE=cuda BUNDLE="" PY=${PYTHON:-python3} DO_BENCH=1 DO_RUN=1 BENCH_ARGS="" WITH_S3=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE=${2:?--device needs cuda or cpu}; shift 2 ;;
        --bundle) BUNDLE=${2:?--bundle needs a folder}; shift 2 ;;
        --python) PY=${2:?--python needs an interpreter}; shift 2 ;;
        --skip-bench) DO_BENCH=0; shift ;;
        --skip-run) DO_RUN=0; shift ;;
        --bench-args) BENCH_ARGS=${2?}; shift 2 ;;
        --with-s3) WITH_S3=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z "$OUT" ]] || die "one OUT folder only (got '$OUT' and '$1')"; OUT=$1; shift ;;
    esac
done
[[ -n "$OUT" ]] || { usage >&2; die "OUT is required"; }
[[ "$DEVICE" == cuda || "$DEVICE" == cpu ]] || die "--device must be cuda or cpu (got '$DEVICE')"
command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' (use --python)"
PY=$(command -v "$PY")
if [[ -n "$BUNDLE" ]]; then
    [[ -d "$BUNDLE" ]] || die "bundle folder $BUNDLE does not exist"
    BUNDLE=$(cd "$BUNDLE" && pwd)
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
trap 'rc=$?; echo "gpu_check: FAILED (exit $rc) at line $LINENO: $BASH_COMMAND; log: $LOG" >&2' ERR

T0=$SECONDS
step() { echo; echo "=== gpu_check [$(date +%H:%M:%S), +$((SECONDS - T0)) s] $*"; }
export RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

# ---------------------------------------------------------------------------------------
step "1/6 environment ($PY, device $DEVICE) -> $OUT/environment.txt"
"$PY" - "$DEVICE" > "$OUT/environment.txt" <<'EOF'
import importlib, platform, sys
print(f"python {sys.version.split()[0]} ({sys.executable}) on {platform.platform()}")
try:
    import torch
except ImportError as e:
    sys.exit(f"gpu_check: ERROR: torch is not importable: {e}")
cuda = torch.cuda.is_available()
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, GPU visible: {cuda}")
if cuda:
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB")
for name in ("numpy", "pyarrow", "pandas", "fsspec", "sklearn", "PIL", "safetensors",
             "matplotlib", "tqdm", "yaml", "ray", "jsonschema", "s3fs"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name} {getattr(mod, '__version__', '?')}")
    except Exception as e:
        print(f"  {name}: missing ({type(e).__name__})")
if sys.argv[1] == "cuda" and not cuda:
    sys.exit("gpu_check: ERROR: --device cuda but torch sees no CUDA GPU (use --device cpu "
             "to run the CPU variant)")
EOF
cat "$OUT/environment.txt"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
fi
PYTAG=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')

# ---------------------------------------------------------------------------------------
step "2/6 dependencies (offline)"
SITE="$OUT/deps/site"
pip_offline() {   # pip_offline REQUIREMENTS_FILE: install what is missing from the bundle
    local req=$1
    if "$PY" -m pip install --no-index --find-links "$BUNDLE/wheels" -r "$req"; then
        return 0
    fi
    echo "gpu_check: the environment refused the install; installing into $SITE instead"
    mkdir -p "$SITE"
    "$PY" -m pip install --no-index --find-links "$BUNDLE/wheels" --target "$SITE" \
        --upgrade -r "$req"
}
if [[ -n "$BUNDLE" ]]; then
    [[ -d "$BUNDLE/wheels" && -f "$BUNDLE/requirements-ray.txt" ]] \
        || die "$BUNDLE is not a bundle from make_gpu_bundle.sh (no wheels/ or requirements-ray.txt)"
    if ! "$PY" -c 'import ray, ray.data' >/dev/null 2>&1; then
        shopt -s nullglob
        tars=("$BUNDLE"/ray-*-"$PYTAG"-*.tar.xz)
        shopt -u nullglob
        [[ ${#tars[@]} -ge 1 ]] || die "no Ray for $PYTAG in $BUNDLE (it has: $(cd "$BUNDLE" \
            && ls ray-*.tar.xz 2>/dev/null | tr '\n' ' ')); rebuild it with make_gpu_bundle.sh \
--python $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        echo "unpacking $(basename "${tars[0]}") into $SITE"
        mkdir -p "$SITE"
        tar -C "$SITE" -xJf "${tars[0]}"
    else
        echo "ray is already importable: $("$PY" -c 'import ray; print(ray.__version__, ray.__file__)')"
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    echo "installing Ray's runtime dependencies from $BUNDLE/wheels (only the missing ones)"
    pip_offline "$BUNDLE/requirements-ray.txt"
    if [[ $WITH_S3 == 1 && -s "$BUNDLE/requirements-s3.txt" ]] \
            && ! "$PY" -c 'import s3fs' >/dev/null 2>&1; then
        echo "installing s3fs from the bundle (optional: only s3:// URLs need it)"
        pip_offline "$BUNDLE/requirements-s3.txt" \
            || echo "gpu_check: WARNING: s3fs did not install; s3:// URLs will not work" >&2
    fi
fi
"$PY" -c 'import ray, ray.data, yaml, jsonschema, msgpack' 2>/dev/null \
    || die "Ray is not usable (import ray, ray.data, yaml, jsonschema, msgpack failed);" \
           "give --bundle DIR made by benchmarks/make_gpu_bundle.sh"
"$PY" -c 'import ray; print(f"ray {ray.__version__} from {ray.__file__}")'

# ---------------------------------------------------------------------------------------
step "3/6 gankit from $REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import gankit, jobs.commands.cli, jobs.stages.sample, gankit.precision; print("gankit importable")' \
    || die "gankit is not importable from $REPO with PYTHONPATH=$PYTHONPATH"
gankit() { "$PY" -m jobs.commands.cli "$@"; }
echo "PYTHONPATH=$PYTHONPATH"

# ---------------------------------------------------------------------------------------
if [[ $DO_BENCH == 1 ]]; then
    step "4/6 benchmarks/bench_scale.py -> $OUT/bench"
    mkdir -p "$OUT/bench"
    if [[ $DEVICE == cuda ]]; then bargs=(--device cuda); else bargs=(--device cpu --quick); fi
    # shellcheck disable=SC2206
    bargs+=($BENCH_ARGS)
    (cd "$REPO" && "$PY" benchmarks/bench_scale.py "${bargs[@]}" --out "$OUT/bench") \
        2>&1 | tee "$OUT/bench/bench_scale.log"
    # how far each precision's images are from fp32 on this device (MODELS.md)
    if [[ $DEVICE == cuda ]]; then targs=(--device cuda --rand1024-samples 8)
    else targs=(--toy-samples 16 --rand-samples 1); fi
    (cd "$REPO" && "$PY" benchmarks/precision_tolerance.py "${targs[@]}") \
        2>&1 | tee "$OUT/bench/precision_tolerance.log"
    # the field's encoders (pSp, e4e, ReStyle, ArcFace) at full size, 256 px input
    if [[ $DEVICE == cuda ]]; then eargs=(--device cuda); else eargs=(--device cpu --seconds 1 --batches 1 --only e4e); fi
    (cd "$REPO" && "$PY" benchmarks/bench_encoders.py "${eargs[@]}" --out "$OUT/bench") \
        2>&1 | tee "$OUT/bench/bench_encoders.log"
else
    step "4/6 benchmark skipped (--skip-bench)"
fi

# ---------------------------------------------------------------------------------------
if [[ $DO_RUN == 1 ]]; then
    step "5/6 gankit run on $DEVICE -> $OUT/run"
    RUN="$OUT/run"
    ROOT="$RUN/root"
    rm -rf "$RUN"
    mkdir -p "$RUN"
    if [[ $DEVICE == cuda ]]; then
        "$PY" "$REPO/benchmarks/bench_scale.py" --save-models "$RUN/models" --sizes 1024
        MODEL="$RUN/models/stylegan2-1024-random"
        N_SAMPLE=2000 PER_PART=250 MB=16 N_EDIT=64 N_INV=16 STEPS=100 WORKERS=0 CPW=4
    else
        MODEL=toy
        N_SAMPLE=200 PER_PART=50 MB=8 N_EDIT=8 N_INV=4 STEPS=10 WORKERS=1 CPW=1
    fi
    cat > "$RUN/pipeline.yaml" <<EOF
# gpu_check: sample -> fit -> edit -> report at real scale ($DEVICE)
root: $ROOT
stages: [sample, fit, edit, report]
model: $MODEL
classifier: toy
device: $DEVICE
workers: $WORKERS
sample: {count: $N_SAMPLE, space: w, images: true, image_format: jpeg, image_quality: 95,
         rows_per_part: $PER_PART, micro_batch: $MB, batch_size: $((4 * MB)),
         cpus_per_worker: $CPW}
fit:    {spaces: [w]}
edit:   {count: $N_EDIT, boundaries: [w/smile, w/old], strengths: [-3, 0, 3],
         image_format: jpeg, micro_batch: $MB, batch_size: $((4 * MB)), cpus_per_worker: $CPW}
report: {grid_samples: 4}
EOF
    cat "$RUN/pipeline.yaml"
    t=$SECONDS
    gankit run "$RUN/pipeline.yaml" 2>&1 | tee "$RUN/pipeline.log"
    echo "pipeline: $((SECONDS - t)) s" | tee "$RUN/pipeline.seconds"

    # The invert stage reads an image dataset: the first N_INV rows of the samples.
    "$PY" - "$ROOT/samples" "$RUN/faces" "$N_INV" <<'EOF'
import glob, os, sys
import pyarrow.parquet as pq
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = sorted(glob.glob(os.path.join(src, "part-*.parquet")))
if not files:
    sys.exit(f"gpu_check: ERROR: no sample parts in {src}")
table = pq.read_table(files[0], columns=["sample_id", "image"]).slice(0, n)
os.makedirs(dst, exist_ok=True)
pq.write_table(table, os.path.join(dst, "faces.parquet"))
print(f"{table.num_rows} images ({sum(len(b) for b in table.column('image').combine_chunks().field('bytes').to_pylist()) // 1024} KiB) -> {dst}")
EOF
    cat > "$RUN/invert.yaml" <<EOF
# gpu_check: invert sampled images in W+ ($DEVICE)
root: $ROOT
stages: [invert]
model: $MODEL
classifier: toy
device: $DEVICE
workers: $WORKERS
invert: {images: $RUN/faces, space: wp, steps: $STEPS, batch_size: $N_INV, keep_target: true}
EOF
    cat "$RUN/invert.yaml"
    t=$SECONDS
    gankit run "$RUN/invert.yaml" 2>&1 | tee "$RUN/invert.log"
    echo "invert: $((SECONDS - t)) s" | tee "$RUN/invert.seconds"
else
    step "5/6 pipeline skipped (--skip-run)"
fi

# ---------------------------------------------------------------------------------------
step "6/6 summary -> $OUT/summary.md"
"$PY" - "$OUT" "$DEVICE" > "$OUT/summary.md" <<'EOF'
import glob, json, os, sys
from datetime import datetime
out, device = sys.argv[1], sys.argv[2]
print(f"# gpu_check ({device})\n")
with open(os.path.join(out, "environment.txt")) as f:
    print("```\n" + f.read().strip() + "\n```\n")
md = os.path.join(out, "bench", "bench_scale.md")
if os.path.exists(md):
    print("## bench_scale\n")
    print(open(md).read())
root = os.path.join(out, "run", "root")
if os.path.isdir(root):
    print("## gankit run\n")
    for name in ("pipeline", "invert"):
        p = os.path.join(out, "run", f"{name}.seconds")
        if os.path.exists(p):
            print(f"- {open(p).read().strip()} wall (driver start to end, Ray start included)")
    print("\n| stage | rows | parts | errors | status | seconds (last run) |")
    print("|---|---:|---:|---:|---|---:|")
    for m in sorted(glob.glob(os.path.join(root, "*", "_manifest.json"))):
        man = json.load(open(m))
        runs = man.get("runs") or [{}]
        secs = ""
        if runs[-1].get("started") and runs[-1].get("finished"):
            t = [datetime.fromisoformat(runs[-1][k].replace("Z", "+00:00"))
                 for k in ("started", "finished")]
            secs = f"{(t[1] - t[0]).total_seconds():.1f}"
        print(f"| {os.path.basename(os.path.dirname(m))} | {man.get('rows', '')} | "
              f"{man.get('num_parts', '')} | {man.get('errors', '')} | {man.get('status', '')} "
              f"| {secs} |")
    fit = os.path.join(root, "fit", "boundaries.json")
    if os.path.exists(fit):
        b = json.load(open(fit)).get("boundaries") or []
        print(f"\nfit: {len(b)} boundaries; " + ", ".join(
            f"{x['name']} val acc {x.get('val_accuracy', float('nan')):.3f}" for x in b))
    inv = sorted(glob.glob(os.path.join(root, "inverted", "part-*.parquet")))
    if inv:
        import pyarrow.parquet as pq
        t = pq.read_table(inv)
        cols = [c for c in ("psnr", "ssim", "mse") if c in t.column_names]
        if cols:
            means = {c: sum(v for v in t.column(c).to_pylist() if v is not None) / t.num_rows
                     for c in cols}
            print("\ninverted: " + ", ".join(f"mean {c} {v:.4g}" for c, v in means.items())
                  + f" over {t.num_rows} images")
    report = os.path.join(root, "report", "report.html")
    if os.path.exists(report):
        print(f"\nreport: {report}")
EOF
cat "$OUT/summary.md"
echo
echo "gpu_check: done in $((SECONDS - T0)) s; everything is under $OUT"
