#!/bin/bash
# after the pool seeds: transfer of the 5500-step main-job model; concat and product fusion with linear heads
while [ ! -f /work/scratch/q3/done.txt ]; do sleep 10; done
cd /work/scratch/exp3
T=/work/main/.venv/bin
D="data.data_root=/work/scratch/fresh4/data train.resume=none train.seed=0"
nice -n 5 $T/syncssl-finetune $D train.run_dir=/work/scratch/exp3/ft-main5500 transfer.checkpoint=/work/scratch/fresh7/runs/pretrain > ft-main5500.log 2>&1
for f in concat prod; do
  nice -n 5 $T/syncssl-train $D train.steps=6000 model.fusion="'$f'" model.head_hidden=0 train.run_dir=/work/scratch/exp3/pre-$f-linear > pre-$f-linear.log 2>&1
  nice -n 5 $T/syncssl-finetune $D train.run_dir=/work/scratch/exp3/ft-$f-linear transfer.checkpoint=/work/scratch/exp3/pre-$f-linear > ft-$f-linear.log 2>&1
done
echo done > done.txt
