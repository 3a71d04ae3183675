#!/bin/bash
# usage: run.sh NAME [overrides...]  (default preset on the v5 small dataset of fresh3; 4000 steps unless overridden)
cd /work/scratch/exp2
name=$1; shift
nice -n 5 /work/main/.venv/bin/syncssl-train data.data_root=/work/scratch/fresh3/data train.run_dir=/work/scratch/exp2/$name train.eval_every=500 train.resume=none "$@" > $name.log 2>&1
/work/main/.venv/bin/python -c "
import json,csv; s=json.load(open('/work/scratch/exp2/$name/summary.json'))
h=list(csv.DictReader(open('/work/scratch/exp2/$name/metrics_heldout.csv')))
print('$name', '$*', 'heldout sync %.3f flip %.3f seen sync %.3f flip %.3f  %.0f pairs/s' % (s['heldout_sync_acc'], s['heldout_flip_acc'], s['seen_sync_acc'], s['seen_flip_acc'], s['pairs_per_s']), [(r['step'], round(float(r['sync_acc']),3)) for r in h])
" >> /work/scratch/exp2/results.txt 2>&1
