# the geometry cue analysis, run at commit 6e87afb (syncssl/sync/epipolar.py, reverted in c2e602f)
import json, sys
import numpy as np
from pathlib import Path
from syncssl.data.manifest import Manifest
from syncssl.data.sources import open_dataset
from syncssl.sync.epipolar import epipolar_error
root = Path(sys.argv[2])
base = json.load(open(sys.argv[1]))
truth = {}
for c in base["per_camera"]:
    truth.setdefault(c["sequence"], {})[c["camera"]] = c["truth"]
ds = open_dataset(root / "shifted", verify="none")
m = Manifest.load(root / "sync/prepared/manifest.json")
idx = {p.key: p for p in m.sequences}
sync_r, uns_r = [], []
for s in ds.sequences:
    ref = s.views[0].name
    tr = truth[s.key]
    for va in s.views:
        for vb in s.views:
            if va is vb: continue
            d = tr.get(vb.name, 0) - tr.get(va.name, 0)
            ba = idx[f"{s.subject}/{s.name}@{va.name}"].tight[:, 0]
            bb = idx[f"{s.subject}/{s.name}@{vb.name}"].tight[:, 0]
            for off in range(-100, 101):
                t = np.arange(len(ba)); u = t + off
                ok = (u >= 0) & (u < len(bb))
                r = epipolar_error(va.camera, vb.camera, ba[t[ok]], bb[u[ok]])
                r = r[np.isfinite(r)]
                (sync_r if off == d else uns_r if abs(off - d) > 7 else []).append(r)
sync_r, uns_r = np.concatenate(sync_r), np.concatenate(uns_r)
print("sync r quantiles", np.percentile(sync_r, [10, 25, 50, 75, 90, 95, 99]).round(3))
print("unsync r quantiles", np.percentile(uns_r, [5, 10, 25, 50, 75, 90]).round(3))
for tau in (0.05, 0.1, 0.2):
    print(tau, "P(sync r<tau)", (sync_r < tau).mean().round(3), "P(unsync r<tau)", (uns_r < tau).mean().round(3))
bins = np.array([0, .01, .02, .03, .05, .07, .1, .15, .2, .3, .5, 1, 1e9])
hs = np.histogram(sync_r, bins)[0] / len(sync_r); hu = np.histogram(uns_r, bins)[0] / len(uns_r)
for lo, hi, a, b in zip(bins[:-1], bins[1:], hs, hu):
    print(f"[{lo:.2f},{hi:.2f}) sync {a:.3f} unsync {b:.3f} llr {np.log((a+1e-6)/(b+1e-6)):+.2f}")
