"""Held-out (and seen) sync accuracy per subject and action of a pre-trained model (analysis with labels)."""
import dataclasses, sys, math, collections, torch, numpy as np
from pathlib import Path
from syncssl.eval.evaluate import resolve_checkpoint
from syncssl.train import checkpoint as ckpt, distributed
from syncssl.train.config import PretrainConfig, config_from_dict
from syncssl.train.trainer import PretextTrainer
run = Path(sys.argv[1]); c = resolve_checkpoint(run); state = ckpt.load(c)
cfg = config_from_dict(PretrainConfig, state["config"])
cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_root=sys.argv[2]), train=dataclasses.replace(cfg.train, run_dir="/tmp/perseq", resume=str(c), eval_every=0, compile=False, device="cpu"))
torch.set_num_threads(1)
t = PretextTrainer(cfg, distributed.setup("cpu"), progress=False)
for split in (cfg.data.eval_split, t.train_split):
    sampling = dataclasses.replace(cfg.sampling, batch_size=64, jitter_shift=0.0, jitter_scale=0.0, single_view_share=0.0, group_size=1)
    pipe = t.pipeline(split, sampling, 12345, source=t.eval_source(split))
    t.model.eval()
    acc = collections.defaultdict(list)
    with torch.no_grad():
        for step in range(int(sys.argv[3]) if len(sys.argv) > 3 else 48):
            plan = pipe.sampler.plan(step); b = pipe.batcher(plan)
            o = t.model(b.images); p = o["sync"].softmax(1)[:, 1].numpy()
            for i in range(len(plan)):
                if plan.flip_label[i]: continue
                s = pipe.sampler.sequences[plan.seq[i]]
                ok = (p[i] > .5) == (plan.sync[i] == 1)
                acc[s.subject].append(ok); acc[s.name.split("/")[-1].split("_")[0].split(" ")[0]].append(ok)
                acc[(s.subject, "sync" if plan.sync[i] else "unsync")].append(ok)
    print(split, {k: (round(float(np.mean(v)), 3), len(v)) for k, v in sorted(acc.items(), key=str)})
