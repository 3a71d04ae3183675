"""Analysis: held-out sync with (a) the plain model, (b) mirror-both TTA, (c) checkpoint weight averaging."""
import dataclasses, sys, torch, numpy as np
from pathlib import Path
from syncssl.train import checkpoint as ckpt, distributed
from syncssl.train.config import PretrainConfig, config_from_dict
from syncssl.train.trainer import PretextTrainer

run = Path(sys.argv[1]); cks = sorted((run / "checkpoints").glob("step-*"))
state = ckpt.load(cks[-1]); cfg = config_from_dict(PretrainConfig, state["config"])
cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_dir="/tmp/tta_eval", resume=str(cks[-1]), eval_every=0, compile=False))
tr = PretextTrainer(cfg, distributed.setup("cpu"), progress=False)

def acc(split, tta=False, pairs=1024):
    tr.cfg.pretext.mirror_average = tta
    r = tr.evaluate(split, pairs)
    return round(r["sync_acc"], 4), round(r["flip_acc"], 4), {k: round(v["sync_acc"], 3) for k, v in r["by_subject"].items()}

ho = cfg.data.eval_split
print(sys.argv[1], "plain", acc(ho)); print(sys.argv[1], "tta  ", acc(ho, True))
tr.close()
