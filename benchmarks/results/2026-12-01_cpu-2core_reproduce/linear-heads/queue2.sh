#!/bin/bash
# second seeds: concatenation with linear heads; the temporal single-view row
cd /work/scratch/exp3
T=/work/main/.venv/bin
D="data.data_root=/work/scratch/fresh4/data train.resume=none train.seed=1 train.steps=6000"
F="data.data_root=/work/scratch/fresh4/data train.resume=none train.seed=1"
$T/syncssl-train $D model.fusion="'concat'" model.head_hidden=0 train.run_dir=/work/scratch/exp3/pre-concat-linear-s1 > pre-concat-linear-s1.log 2>&1
$T/syncssl-finetune $F train.run_dir=/work/scratch/exp3/ft-concat-linear-s1 transfer.checkpoint=/work/scratch/exp3/pre-concat-linear-s1 > ft-concat-linear-s1.log 2>&1
$T/syncssl-train $D model.fusion="'prod'" sampling.mode="'single_view'" sampling.single_view_sync_window=2 train.run_dir=/work/scratch/exp3/pre-temporal-s1 > pre-temporal-s1.log 2>&1
$T/syncssl-finetune $F train.run_dir=/work/scratch/exp3/ft-temporal-s1 transfer.checkpoint=/work/scratch/exp3/pre-temporal-s1 > ft-temporal-s1.log 2>&1
echo done > done2.txt
