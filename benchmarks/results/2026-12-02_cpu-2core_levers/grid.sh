#!/usr/bin/env bash
# grid.sh SEED: the reproduction grid's headline protocol with grouped batches (6000 steps, group 4), then the
# paper's fine-tuning (S1 labels, stem + 3 stages frozen) with the same seed; one line in ft_results.txt
set -u
S=$1
cd /work/scratch/exp
B=/work/main/.venv/bin
$B/syncssl-train data.data_root=/work/scratch/main/data train.resume=none train.seed=$S train.steps=6000 \
  sampling.group_size=4 train.threads=1 train.run_dir=/work/scratch/exp/grid-g4-s$S > grid-g4-s$S.log 2>&1
$B/syncssl-finetune data.data_root=/work/scratch/main/data train.resume=none train.seed=$S train.threads=1 \
  train.run_dir=/work/scratch/exp/ft-grid-g4-s$S transfer.checkpoint=/work/scratch/exp/grid-g4-s$S > ft-grid-g4-s$S.log 2>&1
python3 - $S <<'PY' >> ft_results.txt
import json, sys
S = sys.argv[1]
p = json.load(open(f"/work/scratch/exp/grid-g4-s{S}/summary.json"))
f = json.load(open(f"/work/scratch/exp/ft-grid-g4-s{S}/summary.json"))
print(f"grid-g4-s{S}", {k: round(v, 4) for k, v in p.items() if "acc" in k}, {k: v for k, v in f.items() if "mpjpe" in k.lower()})
PY
