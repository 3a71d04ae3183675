import dataclasses, sys, torch, numpy as np
from pathlib import Path
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
from syncssl.eval.evaluate import resolve_checkpoint
from syncssl.train import checkpoint as ckpt, distributed
from syncssl.train.config import PretrainConfig, config_from_dict
from syncssl.train.trainer import PretextTrainer
run = Path(sys.argv[1]); c = resolve_checkpoint(run); state = ckpt.load(c)
cfg = config_from_dict(PretrainConfig, state["config"])
cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_root=sys.argv[2]), train=dataclasses.replace(cfg.train, run_dir="/tmp/crops", resume=str(c), eval_every=0, compile=False, device="cpu"))
torch.set_num_threads(1)
t = PretextTrainer(cfg, distributed.setup("cpu"), progress=False)
sampling = dataclasses.replace(cfg.sampling, batch_size=64, jitter_shift=0.0, jitter_scale=0.0, group_size=1)
pipe = t.pipeline("test", sampling, 12345, source=t.eval_source("test"))
plan = pipe.sampler.plan(0); b = pipe.batcher(plan)
im = b.images.float()
im = (im - im.amin()) / (im.amax() - im.amin())
fig, ax = plt.subplots(4, 8, figsize=(16, 8))
subj = [pipe.sampler.sequences[s].subject for s in plan.seq]
for k, a in enumerate(ax.flat):
    a.imshow(im[k].permute(1, 2, 0).numpy()); a.set_title(f"{subj[k//2]} {pipe.sampler.sequences[plan.seq[k//2]].name.split('/')[-1][:10]} s{plan.sync[k//2]}", fontsize=7); a.axis("off")
plt.tight_layout(); plt.savefig(sys.argv[3], dpi=70)
