#!/usr/bin/env bash
# throughput of the default pre-training step: one process (2 intra-op threads) vs --nproc 2 (gloo, 1 thread each)
cd /work/scratch/exp
B=/work/main/.venv/bin
for k in 1 2; do
  $B/syncssl-train data.data_root=/work/scratch/main/data train.resume=none train.steps=600 train.eval_every=100000 \
    train.ckpt_every=100000 train.run_dir=/work/scratch/exp/tput-1proc-$k > tput-1proc-$k.log 2>&1
  $B/syncssl-train --nproc 2 data.data_root=/work/scratch/main/data train.resume=none train.steps=600 \
    train.eval_every=100000 train.ckpt_every=100000 train.run_dir=/work/scratch/exp/tput-2proc-$k > tput-2proc-$k.log 2>&1
done
for f in tput-*/summary.json; do python3 -c "import json,sys; s=json.load(open('$f')); print('$f', round(s['pairs_per_s'],1), s['wall_s'], s.get('world_size'))"; done
