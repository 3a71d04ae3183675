"""Held-out and seen sync/flip accuracy per subject of pre-trained runs, with the trainer's own evaluation (the
pairs summary.json's accuracies are measured on: 1024 pairs, seed 12345). usage: by_subject.py DATA_ROOT RUN..."""
import dataclasses, sys, json, torch
from pathlib import Path
from syncssl.eval.evaluate import resolve_checkpoint
from syncssl.train import checkpoint as ckpt, distributed
from syncssl.train.config import PretrainConfig, config_from_dict
from syncssl.train.trainer import PretextTrainer
from syncssl.train.run import by_subject_text
torch.set_num_threads(1)
for run in sys.argv[2:]:
    c = resolve_checkpoint(Path(run)); state = ckpt.load(c)
    cfg = config_from_dict(PretrainConfig, state["config"])
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_root=sys.argv[1]), train=dataclasses.replace(cfg.train, run_dir="/tmp/bysubj", resume=str(c), eval_every=0, compile=False, device="cpu"))
    t = PretextTrainer(cfg, distributed.setup("cpu"), progress=False, log=lambda m: None) if "log" in PretextTrainer.__init__.__code__.co_varnames else PretextTrainer(cfg, distributed.setup("cpu"), progress=False)
    h, s = t.evaluate(cfg.data.eval_split), t.evaluate(t.train_split)
    print(f"{run} step {state.get('step')}: held-out sync {h['sync_acc']:.3f} flip {h['flip_acc']:.3f} [{by_subject_text(h['by_subject'])}]; seen sync {s['sync_acc']:.3f} [{by_subject_text(s['by_subject'])}]", flush=True)
