#!/bin/bash
# usage: [DATA=... WORK=... EVAL_EVERY=...] run.sh NAME [overrides...]
# (default preset; defaults: the v5 small dataset of fresh3, runs in exp2, held-out evaluation every 500 steps)
DATA=${DATA:-/work/scratch/fresh3/data}; WORK=${WORK:-/work/scratch/exp2}; EVAL_EVERY=${EVAL_EVERY:-500}
cd $WORK
name=$1; shift
nice -n 5 /work/main/.venv/bin/syncssl-train data.data_root=$DATA train.run_dir=$WORK/$name train.eval_every=$EVAL_EVERY train.resume=none "$@" > $name.log 2>&1
/work/main/.venv/bin/python -c "
import json,csv; s=json.load(open('$WORK/$name/summary.json'))
h=list(csv.DictReader(open('$WORK/$name/metrics_heldout.csv')))
print('$name', '$*', 'heldout sync %.3f flip %.3f seen sync %.3f flip %.3f  %.0f pairs/s' % (s['heldout_sync_acc'], s['heldout_flip_acc'], s['seen_sync_acc'], s['seen_flip_acc'], s['pairs_per_s']), [(r['step'], round(float(r['sync_acc']),3)) for r in h])
" >> $WORK/results.txt 2>&1
