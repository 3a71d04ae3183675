"""Held-out sync errors of a pre-trained model: AUC, accuracy per class and per offset, the best threshold (an
analysis with the labels, never a training input), and whether the centring statistics learnt on the training
subjects hurt on new ones (batch statistics, AdaBN). usage: heldout_analysis.py RUN DATA_ROOT"""
import dataclasses, sys, torch, numpy as np
from pathlib import Path
from syncssl.eval.evaluate import resolve_checkpoint
from syncssl.train import checkpoint as ckpt, distributed
from syncssl.train.config import PretrainConfig, config_from_dict
from syncssl.train.trainer import PretextTrainer
def main():
    run = Path(sys.argv[1])
    c = resolve_checkpoint(run); state = ckpt.load(c)
    cfg = config_from_dict(PretrainConfig, state["config"])
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_root=sys.argv[2]), train=dataclasses.replace(cfg.train, run_dir="/tmp/adabn", resume=str(c), eval_every=0, compile=False, device="cpu"))
    torch.set_num_threads(1)
    t = PretextTrainer(cfg, distributed.setup("cpu"), progress=False)
    print("eval mode:", t.evaluate("test", 1024))
    p = t.predict("test", 2048)
    rows = p["flip"] == 0
    y, q, off = p["sync"][rows], p["p_sync"][rows], np.abs(p["offset"][rows])
    from torchmetrics.functional.classification import binary_auroc
    roc_auc_score = lambda y, q: float(binary_auroc(torch.from_numpy(q), torch.from_numpy(y)))
    print("AUC", roc_auc_score(y, q), "acc sync pairs", ((q > .5) == 1)[y == 1].mean(), "acc unsync", ((q > .5) == 0)[y == 0].mean())
    for lo, hi in [(1, 12), (13, 25), (26, 40), (41, 64)]:
        m = (y == 0) & (off >= lo) & (off <= hi)
        print(f"unsync |d| {lo}-{hi} frames: n {m.sum()} acc {((q > .5) == 0)[m].mean():.3f}")
    best = max(((( q > th) == (y == 1)).mean(), th) for th in np.linspace(0.05, 0.95, 91))
    print("best threshold acc", best)

    center = t.model.center
    saved = {k: v.clone() for k, v in center.state_dict().items()}
    center.track_running_stats = False; center.running_mean = None; center.running_var = None
    print("center on the eval batch's statistics:", t.evaluate("test", 1024))
    # AdaBN of the centring only: held-out statistics over unlabelled views
    center.track_running_stats = True
    center.running_mean = saved["running_mean"].clone(); center.running_var = saved["running_var"].clone()
    center.reset_running_stats(); center.momentum = None
    pipe = t.pipeline("test", dataclasses.replace(cfg.sampling, batch_size=64, group_size=1, jitter_shift=0.0, jitter_scale=0.0), 999)
    with torch.no_grad():
        t.model.eval(); center.train()
        for s in range(16):
            b = pipe.batch(s); center(t.model.embed(b.images))
    print("center re-estimated on held-out views (AdaBN):", t.evaluate("test", 1024))


    # AdaBN of every normalisation layer (backbone included): all statistics re-estimated on held-out views
    bns = [m for m in t.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats(); m.momentum = None
    with torch.no_grad():
        t.model.eval()
        for m in bns:
            m.train()
        for s in range(16):
            b = pipe.batch(s); t.model(b.images)
    print("every BatchNorm re-estimated on held-out views (AdaBN):", t.evaluate("test", 1024))

if __name__ == "__main__":
    main()
