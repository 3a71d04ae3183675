#!/usr/bin/env bash
# run.sh NAME OVERRIDES...: pre-train on the main job's data with overrides; one line per run in results.txt
set -u
name=$1; shift
cd /work/scratch/exp
start=$(date -u +%H:%M:%S)
/work/main/.venv/bin/syncssl-train data.data_root=/work/scratch/main/data train.resume=none \
  train.run_dir=/work/scratch/exp/$name "$@" > $name.log 2>&1
python3 - "$name" "$start" "$*" <<'PY' >> results.txt
import json, sys, csv
name, start, ov = sys.argv[1:]
try:
    s = json.load(open(f"/work/scratch/exp/{name}/summary.json"))
    keys = [k for k in s if "acc" in k]
    print(name, start, ov, {k: s[k] for k in keys}, "pairs/s", s.get("pairs_per_s", s.get("throughput")))
except Exception as e:
    print(name, start, ov, "FAILED", e)
PY
