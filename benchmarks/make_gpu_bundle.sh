#!/usr/bin/env bash
# Build an offline bundle of what an offline GPU machine lacks to run gankit's jobs:
# a stripped Ray (only what ray.init + Ray Data need) and the wheels of Ray's runtime
# dependencies (+ s3fs and its dependencies). Run it on a connected machine with this
# repository's venv (it pins Ray to the venv's version); copy BUNDLE_DIR to the GPU machine
# and run benchmarks/gpu_check.sh there with --bundle BUNDLE_DIR.
#
#   benchmarks/make_gpu_bundle.sh BUNDLE_DIR [--python 3.12] [--no-s3] [--test-python PY]
#                                            [--no-test] [--max-mib 60]
#
#   --python X.Y      target interpreter (default 3.12); 3.11 builds a bundle this dev
#                     machine can test (the venv's Python)
#   --test-python PY  interpreter (of version X.Y, with numpy, pandas, pyarrow, fsspec) for
#                     the self-test; default: the venv's python when its version is X.Y,
#                     else the test is skipped with a warning
#   --no-s3           leave s3fs (about 15 MiB with botocore) out
#   --max-mib N       fail when the bundle is larger (default 60)
#
# Bundle layout:
#   ray-<ver>-<cpXY>-manylinux_x86_64-stripped.tar.xz  ray/ + ray-<ver>.dist-info/, to unpack
#                                                    into a directory put on PYTHONPATH
#   wheels/                         Ray's runtime dependencies, s3fs and theirs (--no-index)
#   requirements-ray.txt            what to pip install from wheels/ for Ray
#   requirements-s3.txt             the same for s3fs (optional)
#   BUNDLE.txt                      versions, contents, sizes and sha256 sums
#
# What is dropped from Ray's wheel (none of it is on the path of ray.init + ray.data +
# ray.job_submission): the Java jars, rllib, serve, tune, train, llm, the dashboard's web
# client build and every tests/ directory. The self-test unpacks the result, installs the
# dependency wheels into a scratch directory and runs a small Ray Data job on actors, whose
# workers must import Ray from that directory.
set -euo pipefail

die() { echo "make_gpu_bundle: error: $*" >&2; exit 1; }
say() { echo "make_gpu_bundle: $*"; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE="" PYVER=3.12 TEST_PY="" DO_TEST=1 WITH_S3=1 MAX_MIB=60
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) PYVER=${2:?--python needs a version like 3.12}; shift 2 ;;
        --test-python) TEST_PY=${2:?--test-python needs an interpreter}; shift 2 ;;
        --no-test) DO_TEST=0; shift ;;
        --no-s3) WITH_S3=0; shift ;;
        --max-mib) MAX_MIB=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z "$BUNDLE" ]] || die "one BUNDLE_DIR only (got '$BUNDLE' and '$1')"; BUNDLE=$1; shift ;;
    esac
done
[[ -n "$BUNDLE" ]] || die "usage: $0 BUNDLE_DIR [--python 3.12] (see --help)"
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || die "--python must look like 3.12 (got '$PYVER')"
CP="cp${PYVER/./}"

PY=${PYTHON:-$REPO/.venv/bin/python}
[[ -x "$PY" ]] || die "$PY not found: run 'make install' first (it gives Ray's version)"
RAY_VERSION=${RAY_VERSION:-$("$PY" -c 'import ray; print(ray.__version__)')}
say "Ray $RAY_VERSION for CPython $PYVER (manylinux x86_64) -> $BUNDLE"

mkdir -p "$BUNDLE"
BUNDLE=$(cd "$BUNDLE" && pwd)
rm -rf "$BUNDLE/wheels" "$BUNDLE"/ray-*.tar.xz
mkdir -p "$BUNDLE/wheels"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-bundle.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Target: CPython X.Y on manylinux x86_64; pure-Python wheels match as well.
TARGET=(--only-binary=:all: --python-version "$PYVER" --implementation cp
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux_2_28_x86_64 --platform linux_x86_64)

# ---------------------------------------------------------------------------------------
# 1. Ray, stripped

say "downloading ray==$RAY_VERSION ($CP)"
"$PY" -m pip download -q --no-deps "${TARGET[@]}" "ray==$RAY_VERSION" -d "$WORK/dl" \
    || die "pip download of ray==$RAY_VERSION for $CP failed (is PyPI reachable?)"
WHEEL=$(ls "$WORK"/dl/ray-"$RAY_VERSION"-*.whl 2>/dev/null | head -1)
[[ -n "$WHEEL" ]] || die "no ray wheel was downloaded"
say "wheel: $(basename "$WHEEL") ($(du -m "$WHEEL" | cut -f1) MiB)"

mkdir -p "$WORK/ray"
"$PY" - "$WHEEL" "$WORK/ray" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        z.extract(info, sys.argv[2])
        mode = info.external_attr >> 16            # keep the executables executable
        if mode:
            import os
            os.chmod(os.path.join(sys.argv[2], info.filename), mode & 0o777)
EOF
# The binaries the raylet starts must stay executable even if the zip had no modes.
chmod +x "$WORK"/ray/ray/core/src/ray/gcs/gcs_server "$WORK"/ray/ray/core/src/ray/raylet/raylet

before=$(du -sm "$WORK/ray" | cut -f1)
for d in jars rllib serve tune train llm dashboard/client/build; do
    rm -rf "$WORK/ray/ray/$d"
done
find "$WORK/ray/ray" -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} +
# Stripped packages must fail clearly, not half-import: leave a note where they were.
for d in rllib serve tune train llm; do
    mkdir -p "$WORK/ray/ray/$d"
    printf 'raise ModuleNotFoundError("ray.%s was removed from this offline bundle (gankit needs '\
'only ray.init and ray.data); install the full ray wheel to use it")\n' "$d" \
        > "$WORK/ray/ray/$d/__init__.py"
done
after=$(du -sm "$WORK/ray" | cut -f1)
say "stripped: $before MiB -> $after MiB unpacked; compressing (xz -9, about a minute)"
TARBALL="$BUNDLE/ray-$RAY_VERSION-$CP-manylinux_x86_64-stripped.tar.xz"
tar -C "$WORK/ray" -cf - ray "ray-$RAY_VERSION.dist-info" | xz -9 -T0 > "$TARBALL"

# ---------------------------------------------------------------------------------------
# 2. Wheels of Ray's runtime dependencies (and of ray[data]'s) + s3fs

# Ray's Requires-Dist without extras, plus its 'data' extra minus numpy, pandas, pyarrow and
# fsspec, which the GPU machine has (so nothing of that extra is left today).
"$PY" - "$WORK/ray/ray-$RAY_VERSION.dist-info/METADATA" "$PYVER" > "$BUNDLE/requirements-ray.txt" <<'EOF'
import sys
from email.parser import Parser
meta = Parser().parsestr(open(sys.argv[1]).read())
present = {"numpy", "pandas", "pyarrow", "fsspec"}     # the GPU machine's own (ray[data])
out = []
for req in meta.get_all("Requires-Dist") or []:
    spec, _, marker = req.partition(";")
    name = spec.split("<")[0].split(">")[0].split("=")[0].split("!")[0].split("[")[0].strip()
    if "extra ==" in marker and 'extra == "data"' not in marker.replace("'", '"'):
        continue
    if name.lower() in present:
        continue
    out.append(spec.strip())
print("\n".join(sorted(set(out), key=str.lower)))
EOF
say "Ray's runtime dependencies: $(tr '\n' ' ' < "$BUNDLE/requirements-ray.txt")"
"$PY" -m pip download -q "${TARGET[@]}" -d "$BUNDLE/wheels" -r "$BUNDLE/requirements-ray.txt" \
    || die "pip download of Ray's dependencies failed"

: > "$BUNDLE/requirements-s3.txt"
if [[ $WITH_S3 == 1 ]]; then
    S3FS_VERSION=$("$PY" -c 'import s3fs; print(s3fs.__version__)' 2>/dev/null || true)
    echo "s3fs${S3FS_VERSION:+==$S3FS_VERSION}" > "$BUNDLE/requirements-s3.txt"
    say "downloading $(cat "$BUNDLE/requirements-s3.txt") and its dependencies"
    "$PY" -m pip download -q "${TARGET[@]}" -d "$BUNDLE/wheels" -r "$BUNDLE/requirements-s3.txt" \
        || die "pip download of s3fs failed (use --no-s3 to leave it out)"
fi

# ---------------------------------------------------------------------------------------
# 3. Self-test: unpack, install the wheels into a scratch dir, run a Ray Data job on actors

if [[ $DO_TEST == 1 && -z "$TEST_PY" ]]; then
    if [[ "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" == "$PYVER" ]]; then
        TEST_PY=$PY
    fi
fi
if [[ $DO_TEST == 1 && -n "$TEST_PY" ]]; then
    tv=$("$TEST_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ "$tv" == "$PYVER" ]] || die "--test-python is Python $tv, the bundle is for $PYVER"
    say "self-test with $TEST_PY"
    SITE="$WORK/test-site"
    mkdir -p "$SITE"
    tar -C "$SITE" -xJf "$TARBALL"
    "$TEST_PY" -m pip install -q --no-index --find-links "$BUNDLE/wheels" --target "$SITE" \
        -r "$BUNDLE/requirements-ray.txt" || die "the bundle's wheels do not install offline"
    RAY_AUTH_MODE=disabled PYTHONPATH="$SITE" timeout 600 "$TEST_PY" - "$SITE" <<'EOF' \
        || die "self-test failed: the stripped Ray did not run a Ray Data job"
import os, sys, tempfile
site = sys.argv[1]
import ray
assert ray.__file__.startswith(site), f"ray imported from {ray.__file__}, not {site}"
ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
import ray.data
from ray.data import ActorPoolStrategy
ray.data.DataContext.get_current().enable_progress_bars = False

class Square:                       # an actor, like the jobs' part workers
    def __init__(self):
        import ray as r
        self.where = r.__file__
    def __call__(self, batch):
        batch["y"] = batch["id"] ** 2
        batch["where"] = [self.where] * len(batch["id"])
        return batch

out = tempfile.mkdtemp()
ray.data.range(400, override_num_blocks=4).map_batches(
    Square, batch_size=100, compute=ActorPoolStrategy(size=2)).write_parquet(out)
df = ray.data.read_parquet(out).to_pandas()
assert len(df) == 400 and int(df.y.sum()) == sum(i * i for i in range(400)), df
assert all(w.startswith(site) for w in df["where"]), set(df["where"])
ray.shutdown()
print(f"make_gpu_bundle: self-test ok: ray {ray.__version__} from the bundle, "
      f"400 rows through 2 actors, Parquet written and read back")
EOF
elif [[ $DO_TEST == 1 ]]; then
    echo "make_gpu_bundle: WARNING: no Python $PYVER to self-test with (give --test-python);" \
         "build with --python $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
         "to test the same recipe with the venv's Python" >&2
fi

# ---------------------------------------------------------------------------------------
# 4. Manifest and size

{
    echo "gankit offline GPU bundle"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m) by benchmarks/make_gpu_bundle.sh"
    echo "ray: $RAY_VERSION, python: $PYVER ($CP), stripped: jars rllib serve tune train llm" \
         "dashboard/client/build tests"
    echo
    (cd "$BUNDLE" && find . -type f ! -name BUNDLE.txt | sort | while read -r f; do
        printf '%s  %8d KiB  %s\n' "$(sha256sum "$f" | cut -c1-16)" \
            "$(( $(stat -c %s "$f") / 1024 ))" "${f#./}"; done)
} > "$BUNDLE/BUNDLE.txt"
bytes=$(du -sb "$BUNDLE" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
say "bundle: $BUNDLE, $mib MiB ($(ls "$BUNDLE/wheels" | wc -l) wheels + $(basename "$TARBALL"))"
if (( bytes > MAX_MIB * 1048576 )); then
    die "the bundle is $mib MiB, over the $MAX_MIB MiB limit"
fi
