import json, sys, time, dataclasses
import torch
from syncssl.sync import load_model, synchronize
from syncssl.sync.pipeline import SyncOptions
from syncssl.sync.epipolar import EpipolarCue
base = json.load(open(sys.argv[1])); root = sys.argv[2]; mode = sys.argv[3]; steps = int(sys.argv[4])
kw = dict(a.split("=") for a in sys.argv[5:])
truth = {}
for c in base["per_camera"]:
    truth.setdefault(c["sequence"], {})[c["camera"]] = c["truth"]
m = load_model("/work/scratch/main/runs/pretrain")
if mode == "geo":
    class Zero:
        def __init__(s, inner): s.inner = inner
        def embed(s, x): return s.inner.embed(x)
        def log_odds(s, a, b): return torch.zeros(len(a))
    m = dataclasses.replace(m, scorer=Zero(m.scorer))
cue = EpipolarCue(**{k: float(v) for k, v in kw.items()}) if mode in ("geo", "both") else None
opt = SyncOptions(max_offset_s=2.2, instants=512, seed=base["offset_seed"], adapt_steps=steps, geometry=cue)
t = time.time()
r = synchronize(root + "/shifted", m, opt, out=f"/work/scratch/s5/out-{mode}-{steps}-{'_'.join(sys.argv[5:])}", prepared=root + "/sync/prepared", progress=False, log=lambda s: None)
ok = n = ok1 = det = okb = 0
for s in r.sequences:
    for c in s.cameras[1:]:
        tr = truth[s.key][c.camera] - truth[s.key].get(s.reference, 0)
        n += 1; e = c.estimate; det += e.determined
        ok += e.determined and abs(e.offset - tr) <= 1
        okb += e.best is not None and abs(e.best - tr) <= 1
        if c.first is not None:
            ok1 += c.first.determined and abs(c.first.offset - tr) <= 1
        print(s.key, c.camera, tr, e.offset, e.best, round(e.support, 3), "first", None if c.first is None else (c.first.offset, c.first.best))
print(f"{mode} steps {steps} {kw}: within 1 frame {ok}/{n} = {ok/n:.3f} (first search {ok1}/{n}); determined {det}; best peak {okb}; {time.time()-t:.0f} s")
