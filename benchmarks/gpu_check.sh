#!/usr/bin/env bash
# One prepared GPU check: everything that needs a GPU, in one go, on a bare single-GPU machine with no network.
#
#   bash benchmarks/gpu_check.sh OUT_DIR            # run it (from the repo root); about 8 minutes on one H200
#   bash benchmarks/gpu_check.sh --dry-run OUT_DIR  # the control flow only: every step says what it would run
#
# Expects python3 with torch (CUDA), triton, numpy, rich, click, torchmetrics, matplotlib, tensorboard and pytest.
# What is missing there (PyAV, cdflib; DALI is too large to carry) can travel as wheels in .whl/ (see the device
# tool's README): they are installed into /tmp/site first. Each step runs under its own timeout, so one failure
# does not stop the rest; OUT_DIR gets one log per step and summary.json (step -> status, seconds, exit code).
set -u
DRY=0
GPU_CHECK_FAKE=${GPU_CHECK_FAKE:-}
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:?usage: gpu_check.sh [--dry-run] OUT_DIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 SYNCSSL_GPU_CHECK=1
SUMMARY="$OUT/summary.jsonl"
: > "$SUMMARY"

step() {  # step NAME TIMEOUT_S COMMAND...: run it (or say it), log it, record status and time
  local name=$1 limit=$2; shift 2
  local log="$OUT/$name.log" t0 rc status
  t0=$(date +%s)
  if [ "$DRY" = 1 ]; then  # GPU_CHECK_FAKE="name:rc" makes one step fail in a dry run (tests the control flow)
    echo "would run ($limit s): $*" > "$log"; rc=0; status=dry-run
    if [ "${GPU_CHECK_FAKE%%:*}" = "$name" ]; then
      timeout 1 bash -c "exit ${GPU_CHECK_FAKE#*:}"; rc=$?
      case $rc in 0) ;; 124|137) status=timeout ;; *) status=failed ;; esac
    fi
  else
    echo "== $name: $* (limit $limit s)" | tee "$log"
    timeout --kill-after=10 "$limit" bash -c "$*" >> "$log" 2>&1; rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  fi
  printf '{"step": "%s", "status": "%s", "rc": %d, "seconds": %d, "log": "%s"}\n' \
    "$name" "$status" "$rc" "$(( $(date +%s) - t0 ))" "$log" >> "$SUMMARY"
  echo "-- $name: $status (rc $rc)"
}

step environment 60 "nvidia-smi; $PY -c 'import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__, torch.cuda.get_device_name(0))'; nproc; free -g"
step wheels 120 "if ls .whl/*.whl >/dev/null 2>&1; then $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; else echo 'no wheels carried'; fi"
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
step build 240 "$PY setup.py build_ext --inplace && $PY -c 'import syncssl.ops as o; print(\"cpp\", o.HAS_CPP_KERNEL, \"triton\", o.HAS_TRITON_KERNEL)'"
step gpu_tests 300 "$PY -m pytest -q -x -m gpu tests"
step bench_data 300 "$PY -m syncssl.bench data --json $OUT/bench_data.json"
step bench_train 420 "$PY -m syncssl.bench train --dataset synthetic:tiny --data-root $OUT/data --steps 30 --json $OUT/bench_train.json"
step pretrain_gpu 420 "$PY -m syncssl.train --preset gpu data.dataset='synthetic:tiny' data.data_root='$OUT/data' train.steps=300 train.batch_size=128 train.eval_every=0 train.eval_pairs=256 train.run_dir='$OUT/pretrain' train.resume='none'"

# one JSON document from the lines (no jq on the machine)
$PY - "$SUMMARY" "$OUT/summary.json" <<'EOF'
import json, sys
steps = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
json.dump({"steps": steps, "ok": all(s["status"] in ("ok", "dry-run") for s in steps)}, open(sys.argv[2], "w"), indent=1)
print(json.dumps({s["step"]: s["status"] for s in steps}))
EOF
