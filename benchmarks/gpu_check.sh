#!/usr/bin/env bash
# First contact with a GPU: every check that needs one, in one prepared run of under 8 minutes (limits add up to
# 480 s), on a bare single-GPU machine without network. Run from anywhere:
#
#   bash benchmarks/gpu_check.sh OUT              # run it
#   bash benchmarks/gpu_check.sh OUT --dry-run    # print the plan only (flags go anywhere: --dry-run OUT too)
#   bash benchmarks/gpu_check.sh OUT --rehearse   # on a CPU machine: the real script, the GPU steps skipped
#   bash benchmarks/gpu_check.sh OUT --only gpu_tests,bench_data    # some steps only (a rerun after a fix)
#
# Needs python3 with torch (CUDA), triton, numpy, rich, click, torchmetrics, matplotlib and pytest. PyAV (the tests
# and the synthetic data write videos with it) is installed from the wheels in .whl/ beside the repo, with
# `pip install --no-index --target WORK/site`: download it where there is network, e.g.
#   pip download av --only-binary=:all: --no-deps --python-version 3.11 --platform manylinux_2_28_x86_64 -d .whl
# (PyAV's abi3 wheel, ~36 MB, serves Python 3.11 and 3.12). Other wheels in .whl/ are installed alike.
#
# Each step runs under its own time limit; a failing step does not stop the others. OUT receives only small files,
# at most seven: summary.json (rewritten after every step), steps.md (the same as a table), environment.json,
# the benchmarks' JSON results, pretrain.json and logs.tar.gz (every step's log, the test report, the training curves). Datasets, tiles
# and checkpoints go to the working folder WORK (default: $TMPDIR/syncssl-gpu-check, never inside OUT).
set -u
usage="usage: gpu_check.sh OUT [--dry-run | --rehearse] [--only STEP,...] [--work DIR]"
MODE=run ONLY="" OUT="" WORK=${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/syncssl-gpu-check}
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) MODE=dry-run ;;
    --rehearse) MODE=rehearse ;;
    --only) ONLY=${2:?$usage}; shift ;;
    --work) WORK=${2:?$usage}; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "unknown option $1; $usage" >&2; exit 2 ;;
    *) [ -z "$OUT" ] || { echo "one output folder, got $OUT and $1; $usage" >&2; exit 2; }; OUT=$1 ;;
  esac
  shift
done
[ -n "$OUT" ] || { echo "$usage" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
FAIL=${GPU_CHECK_FAIL:-}  # "step:rc": that step's command becomes `exit rc` (tests the control flow)

# name | limit (s) | needs a GPU | command (runs in the repo root with OUT, WORK and PY set)
STEPS=(
  "environment|30|cpu|\$PY benchmarks/gpu_environment.py \"\$OUT/environment.json\""
  "wheels|20|cpu|if ls .whl/*.whl >/dev/null 2>&1; then \$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target \"\$WORK/site\" .whl/*.whl; else echo 'no wheels in .whl/'; fi && \$PY -c 'import av; print(\"PyAV\", av.__version__, av.__file__)'"
  "gpu_tests|90|gpu|\$PY -m pytest -q -rA -p no:cacheprovider -m gpu tests --junitxml=\"\$WORK/logs/gpu_tests.xml\""
  "bench_data|60|gpu|\$PY -m syncssl.bench data --quick --json \"\$OUT/bench_data.json\""
  "pretrain_gpu|120|gpu|\$PY -m syncssl.train --preset gpu data.dataset='synthetic:tiny' data.data_root=\"\$WORK/data\" train.steps=300 train.batch_size=128 train.eval_every=0 train.eval_pairs=256 train.run_dir=\"\$WORK/pretrain\" train.resume=none && cp \"\$WORK/pretrain/summary.json\" \"\$OUT/pretrain.json\" && cp \"\$WORK/pretrain/curves.png\" \"\$WORK/logs/\""
  "bench_train|100|gpu|\$PY -m syncssl.bench train --dataset synthetic:tiny --preset gpu --steps 20 --json \"\$OUT/bench_train.json\" data.data_root=\"\$WORK/data\" train.run_dir=\"\$WORK/bench-train\""
  "build|60|cpu|\$PY setup.py -q build_ext --inplace --build-temp \"\$WORK/build\" && \$PY -c 'import syncssl.ops as o; assert o.HAS_CPP_KERNEL, \"the C++ extension did not build\"; print(\"C++ kernel: yes\")'"
)

plan() {
  local total=0 row name limit needs cmd note
  echo "syncssl GPU check ($MODE): OUT=$OUT, WORK=$WORK"
  printf '%-13s %6s  %-5s  %s\n' step limit needs command
  for row in "${STEPS[@]}"; do
    IFS='|' read -r name limit needs cmd <<< "$row"
    note=""
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then note=" (not selected)"
    elif [ "$MODE" = rehearse ] && [ "$needs" = gpu ]; then note=" (skipped: rehearsal)"
    else total=$((total + limit)); fi
    printf '%-13s %5ss  %-5s  %s%s\n' "$name" "$limit" "$needs" "$cmd" "$note"
  done
  echo "at most $total s in all"
}

plan
[ "$MODE" = dry-run ] && exit 0

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
case "$WORK/" in "$OUT"/*) echo "the working folder $WORK lies inside OUT; pass --work DIR elsewhere" >&2; exit 2 ;; esac
rm -rf "$WORK/logs" "$WORK/pretrain" "$WORK/bench-train"
mkdir -p "$WORK/logs"
rm -f "$OUT"/{summary.json,steps.md,logs.tar.gz,environment.json,bench_data.json,pretrain.json,bench_train.json}
cd "$REPO" || exit 2
export OUT WORK PY PYTHONUNBUFFERED=1 SYNCSSL_GPU_CHECK=1
export PYTHONPATH=$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}
[ "$MODE" = rehearse ] && export GPU_CHECK_NO_GPU=1

json_string() {  # a JSON string literal of $1
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}; s=${s//$'\t'/ }; s=${s//$'\r'/}
  printf '"%s"' "${s//$'\n'/\\n}"
}

RESULTS=()  # one JSON object per step done
write_summary() {  # summary.json and steps.md from what has run so far, and the logs (a killed run keeps them)
  local ok=true r joined
  for r in "${RESULTS[@]}"; do [[ $r == *'"status": "ok"'* || $r == *'"status": "skipped"'* ]] || ok=false; done
  joined=$(IFS=,; echo "${RESULTS[*]}")
  printf '{"mode": "%s", "ok": %s, "commit": %s, "started": "%s", "steps": [%s]}\n' "$MODE" "$ok" \
    "$(json_string "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)")" "$STARTED" "$joined" \
    > "$OUT/summary.json.tmp" && mv "$OUT/summary.json.tmp" "$OUT/summary.json"
  printf '%s\n' "| step | status | seconds | limit | last line of the log |" "|---|---|---|---|---|" "${TABLE[@]}" \
    > "$OUT/steps.md"
  tar -czf "$OUT/logs.tar.gz.tmp" -C "$WORK" logs && mv "$OUT/logs.tar.gz.tmp" "$OUT/logs.tar.gz"
}

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
TABLE=()
for row in "${STEPS[@]}"; do
  IFS='|' read -r name limit needs cmd <<< "$row"
  [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]] && continue
  log="$WORK/logs/$name.log"
  t0=$(date +%s)
  if [ "$MODE" = rehearse ] && [ "$needs" = gpu ]; then
    echo "skipped: needs a GPU (rehearsal)" > "$log"; rc=0; status=skipped
  else
    [ "${FAIL%%:*}" = "$name" ] && cmd="exit ${FAIL#*:}"
    echo "== $name (limit $limit s): $cmd" | tee "$log"
    timeout --kill-after=5 "$limit" bash -c "$cmd" >> "$log" 2>&1; rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  fi
  seconds=$(( $(date +%s) - t0 ))
  last=$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-200)
  RESULTS+=("{\"step\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $seconds, \"limit\": $limit, \"last\": $(json_string "$last")}")
  TABLE+=("| $name | $status | $seconds | $limit | ${last//|//} |")
  write_summary
  echo "-- $name: $status (rc $rc, $seconds s)"
done

big=$(find "$OUT" -type f -size +4M)
[ -z "$big" ] || { echo "files over 4 MB in OUT (they belong in WORK): $big" >&2; exit 1; }
grep -q '"ok": true' "$OUT/summary.json"
