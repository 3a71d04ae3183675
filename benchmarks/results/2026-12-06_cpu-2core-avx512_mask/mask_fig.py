"""What the network sees: held-out views (S9, S11) as the fused op assembles them (background -> fill), and the
mask channel model.input_norm=mask adds. Usage: mask_fig.py RUN OUT.png"""
import dataclasses, sys, torch, numpy as np
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
from pathlib import Path
from syncssl.train import checkpoint as ckpt, distributed
from syncssl.train.config import PretrainConfig, config_from_dict
from syncssl.train.trainer import PretextTrainer
from syncssl.models.resnet import WithPersonMask

run = Path(sys.argv[1]); ck = sorted((run / "checkpoints").glob("step-*"))[-1]
cfg = config_from_dict(PretrainConfig, ckpt.load(ck)["config"])
cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_dir="/tmp/maskfig", resume="none", eval_every=0, amp="off"))
tr = PretextTrainer(cfg, distributed.setup("cpu"), progress=False)
sampling = dataclasses.replace(cfg.sampling, batch_size=32, jitter_shift=0.0, jitter_scale=0.0, group_size=1)
pipe = tr.pipeline(cfg.data.eval_split, sampling, 7, source=tr.eval_source(cfg.data.eval_split))
b = pipe.batch(0)
x = b.images.float()
mean, std = torch.tensor(cfg.data.mean).view(1, 3, 1, 1), torch.tensor(cfg.data.std).view(1, 3, 1, 1)
rgb = (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
mask = WithPersonMask()(x)[:, 3].numpy()
names = np.array([s.subject for s in pipe.sampler.sequences])[b.seq.numpy().repeat(2)[:len(x)]] if hasattr(b, "seq") else [""] * len(x)
order = [i for i in range(len(x)) if names[i] == "S9"][:6] + [i for i in range(len(x)) if names[i] == "S11"][:2]
fig, ax = plt.subplots(2, len(order), figsize=(1.6 * len(order), 3.4))
for c, i in enumerate(order):
    ax[0, c].imshow(rgb[i]); ax[0, c].set_title(names[i], fontsize=8)
    ax[1, c].imshow(mask[i], cmap="gray", vmin=-1, vmax=1)
    for r in range(2): ax[r, c].axis("off")
ax[0, 0].text(-8, 32, "image", rotation=90, va="center", ha="right", fontsize=8)
ax[1, 0].text(-8, 32, "mask channel", rotation=90, va="center", ha="right", fontsize=8)
fig.suptitle("held-out views as the network sees them: the removed background is the mean grey (top);\n"
             "model.input_norm=mask adds the person mask as a fourth channel (bottom)", fontsize=8)
fig.tight_layout(); fig.savefig(sys.argv[2], dpi=110); tr.close()
print("wrote", sys.argv[2])
