#!/usr/bin/env bash
# One visit to a CUDA machine (docs/gpu.md): the CUDA tests, the speed benchmark and a training run that stops
# itself, on a machine with torch and numpy alone (every step runs with SimpleITK blocked), from the tensor
# cache of the training data; the results go to OUTDIR.
#
#   bash scripts/gpu_run.sh OUTDIR [--cpu-smoke] [--config CONFIG.toml] [--minutes M] [--work DIR]
#
# OUTDIR receives at most 8 files: summary.md (steps, exit codes, seconds, the speed table, the last training
# lines, the tail of a failed step's log, the returned files' sha256), cuda_tests.log, speed.md, train.log and
# the run folder as run.tar.gz (model.pt, TensorBoard, and the latest checkpoint while the archive stays within
# 60 MiB), split into run.tar.gz.partNN of 15 MiB when larger. The run folder itself, every checkpoint
# included, is DIR/run (default DIR: a new temporary folder). A GPU visit trains CONFIG (default benchmarks/training_configs/brain_gpu_avsm_2mm_tensor_cache.toml)
# for M minutes (default 6) and needs its tensor cache and a CUDA GPU.
# --cpu-smoke (what CI runs): the same steps at a tiny size on the CPU: a tensor cache of the bundled sample pair
# (built with SimpleITK, the one step that may use it), a tiny network trained for a few steps, the benchmark on
# a small volume; the CUDA tests skip. Bad input: one line on stderr and exit 2; a failed step: exit 1, after
# every step has run and the summary is written.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
fail() { echo "gpu_run: error: $*" >&2; exit 2; }

OUTDIR="" SMOKE=0 CONFIG="" MINUTES="" WORK=""
while [ $# -gt 0 ]; do
    case $1 in
        --cpu-smoke) SMOKE=1 ;;
        --config) [ $# -ge 2 ] || fail "--config needs a path"; CONFIG=$2; shift ;;
        --minutes) [ $# -ge 2 ] || fail "--minutes needs a number"; MINUTES=$2; shift ;;
        --work) [ $# -ge 2 ] || fail "--work needs a folder"; WORK=$2; shift ;;
        -*) fail "unknown option $1 (usage: scripts/gpu_run.sh OUTDIR [--cpu-smoke] [--config CONFIG.toml] [--minutes M] [--work DIR])" ;;
        *) [ -z "$OUTDIR" ] || fail "one OUTDIR only (got $OUTDIR and $1)"; OUTDIR=$1 ;;
    esac
    shift
done
[ -n "$OUTDIR" ] || fail "usage: scripts/gpu_run.sh OUTDIR [--cpu-smoke] [--config CONFIG.toml] [--minutes M] [--work DIR]"
if [ -n "$MINUTES" ]; then
    [[ $MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] || fail "--minutes must be a positive number (got $MINUTES)"
fi
"$PYTHON" -c "import numpy, torch" 2>/dev/null || fail "$PYTHON cannot import torch and numpy"

mkdir -p "$OUTDIR" || fail "cannot create $OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
[ -z "$(ls -A "$OUTDIR")" ] || fail "$OUTDIR is not empty (the returned files must be this run's alone)"
if [ -z "$WORK" ]; then WORK=$(mktemp -d "${TMPDIR:-/tmp}/avsm_gpu_run.XXXXXX"); fi
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd) || fail "cannot create $WORK"
[ ! -e "$WORK/run" ] || fail "$WORK/run exists already (choose another --work folder)"
if [ -n "$CONFIG" ] && [[ $CONFIG != /* ]]; then CONFIG="$PWD/$CONFIG"; fi
export PYTHONPATH="$REPO/AVSMRegistration" PYTHONUNBUFFERED=1
TORCH_ONLY="$REPO/scripts/no_simpleitk:$REPO/AVSMRegistration"  # PYTHONPATH of the steps: SimpleITK blocked
cd "$REPO"

if [ $SMOKE = 1 ]; then
    MODE="CPU smoke"
    MINUTES=${MINUTES:-1}
    SPEED_ARGS=(--size 32 40 32 --spacing 4 --repeats 2 --device cpu)
    # the one step that may use SimpleITK: the bundled sample pair on a tiny grid
    "$PYTHON" -m avsm.training.tensor_cache build scripts/gpu_run/smoke_build.toml "$WORK/smoke_cache.pt" \
        >"$WORK/cache.log" 2>&1 || fail "building the smoke tensor cache failed: $(tail -n 1 "$WORK/cache.log")"
    cp scripts/gpu_run/smoke_train.toml "$WORK/smoke_train.toml"
    CONFIG=${CONFIG:-$WORK/smoke_train.toml}
else
    MODE="GPU"
    MINUTES=${MINUTES:-6}
    SPEED_ARGS=(--size 160 192 160 --spacing 1 --repeats 10 --device cuda)
    CONFIG=${CONFIG:-benchmarks/training_configs/brain_gpu_avsm_2mm_tensor_cache.toml}
    CACHE=$(PYTHONPATH=$TORCH_ONLY "$PYTHON" -c "
import sys
from avsm.errors import AVSMError
from avsm.training import load_config
try:
    config = load_config(sys.argv[1])
except AVSMError as error:
    sys.exit(f'{error}')
if not config.data.tensor_cache:
    sys.exit(f'{sys.argv[1]} reads no tensor cache (data.tensor_cache): the GPU machine has no image folders')
print(config.path(config.data.tensor_cache))" "$CONFIG" 2>&1) || fail "$CACHE"
    [ -f "$CACHE" ] || fail "tensor cache $CACHE not found: build it with 'python -m avsm.training.tensor_cache build \
benchmarks/training_configs/brain_gpu_avsm_2mm.toml .gpu_cache/brain_2mm.pt' and name .gpu_cache in the run's carry"
    "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        || fail "no CUDA GPU here (use --cpu-smoke for the CPU check)"
fi

STEPS="$WORK/steps.md"
printf '| step | exit | seconds |\n| --- | ---: | ---: |\n' >"$STEPS"
FAILED=0
step() {  # step NAME LOG COMMAND...: run with SimpleITK blocked, record exit code and seconds
    local name=$1 log=$2 started=$SECONDS status
    shift 2
    PYTHONPATH=$TORCH_ONLY "$@" >"$log" 2>&1
    status=$?
    echo "| $name | $status | $((SECONDS - started)) |" >>"$STEPS"
    [ $status = 0 ] || FAILED=1
}

if "$PYTHON" -c "import pytest" 2>/dev/null; then
    step "CUDA tests (pytest)" "$OUTDIR/cuda_tests.log" \
        "$PYTHON" -m pytest -q -rs -p no:cacheprovider Testing/gpu/test_cuda.py
else
    step "CUDA tests (no pytest: plain runner)" "$OUTDIR/cuda_tests.log" "$PYTHON" Testing/gpu/test_cuda.py
fi
step "speed benchmark" "$WORK/speed.log" \
    "$PYTHON" benchmarks/gpu_speed.py "$CONFIG" "${SPEED_ARGS[@]}" --output "$OUTDIR/speed.md"
# the trainer stops itself at the budget; timeout is the backstop (a clock that misreads, a step that hangs) that
# keeps the archive and the summary inside the one device command (exit 124 in the summary when it fired)
HARD_STOP=$(awk -v m="$MINUTES" 'BEGIN { print int(m * 60) + 90 }')
step "training ($MINUTES min budget)" "$OUTDIR/train.log" \
    timeout "$HARD_STOP" "$PYTHON" -m avsm.training "$CONFIG" --run-dir "$WORK/run" --max-minutes "$MINUTES"

if [ -d "$WORK/run" ]; then
    # the latest checkpoint (and its sidecar) lets a later visit resume exactly; dropped when it does not fit
    LATEST=$(cd "$WORK" && ls run/checkpoints/step_*.pt 2>/dev/null | tail -n 1)
    mapfile -t KEPT < <(cd "$WORK" && ls -d run/* | grep -vx run/checkpoints)
    tar -czf "$WORK/run.tar.gz" -C "$WORK" "${KEPT[@]}" ${LATEST:+"$LATEST" "$LATEST.sha256"}
    if [ "$(stat -c %s "$WORK/run.tar.gz")" -gt $((60 * 1024 * 1024)) ]; then
        tar -czf "$WORK/run.tar.gz" -C "$WORK" "${KEPT[@]}"
    fi
    if [ "$(stat -c %s "$WORK/run.tar.gz")" -gt $((15 * 1024 * 1024)) ]; then
        split -b 15M -d -a 2 "$WORK/run.tar.gz" "$OUTDIR/run.tar.gz.part"
    else
        cp "$WORK/run.tar.gz" "$OUTDIR/run.tar.gz"
    fi
fi

{
    echo "# avsm GPU visit: $MODE"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), config $CONFIG, run folder $WORK/run"
    "$PYTHON" -c "import torch; print(f'torch {torch.__version__}, ' + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA GPU'))"
    echo
    cat "$STEPS"
    echo
    [ -f "$OUTDIR/speed.md" ] && cat "$OUTDIR/speed.md" && echo
    echo "## Training: last lines"
    echo
    echo '```'
    grep -E "^(epoch|time budget|model written|avsm: error)" "$OUTDIR/train.log" | tail -n 8
    echo '```'
    echo
    grep -q "speed benchmark | 0 |" "$STEPS" || { echo "Speed benchmark log (tail):"; echo '```'; tail -n 15 "$WORK/speed.log"; echo '```'; echo; }
    echo "Checkpoints: $(ls "$WORK/run/checkpoints" 2>/dev/null | grep -c '\.pt$') in $WORK/run/checkpoints on the machine;" \
        "returned in run.tar.gz: $( (cat "$OUTDIR"/run.tar.gz* | tar -tz | grep 'checkpoints/.*\.pt$') 2>/dev/null || echo none)"
    echo
    echo "## Returned files (sha256)"
    echo
    (cd "$OUTDIR" && ls | grep -vx summary.md | xargs sha256sum -- | sed 's/^/    /')
} >"$OUTDIR/summary.md" 2>&1

echo "gpu_run: $MODE run done in ${SECONDS} s (failed steps: $FAILED); summary: $OUTDIR/summary.md"
exit $FAILED
