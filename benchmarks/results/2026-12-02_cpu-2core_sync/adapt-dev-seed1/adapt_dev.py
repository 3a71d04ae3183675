import json, sys, time
import torch
from syncssl.sync import SyncOptions, load_model, synchronize
from syncssl.sync.pipeline import SyncOptions
base = json.load(open(sys.argv[1]))  # bench json: truth per camera
root = sys.argv[2]  # bench out dir
steps, lr = int(sys.argv[3]), float(sys.argv[4])
truth = {}
for c in base["per_camera"]:
    truth.setdefault(c["sequence"], {})[c["camera"]] = c["truth"]
m = load_model("/work/scratch/main/runs/pretrain")
opt = SyncOptions(max_offset_s=2.2, instants=512, seed=base["offset_seed"], adapt_steps=steps, adapt_lr=lr, mirrored=len(sys.argv) > 5)
t = time.time()
r = synchronize(root + "/shifted", m, opt, out=f"{root}/dev-{steps}-{lr}-{len(sys.argv)}", prepared=root + "/sync/prepared", progress=False,
                log=lambda s: print(s, flush=True))
ok = n = ok1 = det = 0
for s in r.sequences:
    for c in s.cameras[1:]:
        tr = truth[s.key][c.camera] - truth[s.key].get(s.reference, 0)
        n += 1
        e = c.estimate
        det += e.determined
        ok += e.determined and abs(e.offset - tr) <= 1
        if c.first is not None:
            ok1 += c.first.determined and abs(c.first.offset - tr) <= 1
        print(s.key, c.camera, tr, e.offset, e.best, round(e.support, 3), "first", None if c.first is None else (c.first.offset, c.first.best))
print(f"steps {steps} lr {lr}: within 1 frame {ok}/{n} = {ok/n:.3f} (first search {ok1}/{n}); determined {det}; {time.time()-t:.0f} s")
