import json, sys
def ok(e, t): return e is not None and abs(e - t) <= 1
for f in sorted(sys.argv[1:]):
    d = json.load(open(f)); n = len(d['per_camera'])
    row = []
    for thr in (0.9, 0.8, 0.7, 0.6, 0.5):
        good = bad = 0
        for c in d['per_camera']:
            s = c['support']; b = c['joint_best']
            if b is None or s is None or s != s: continue
            if abs(b) >= 55 - 1: continue  # edge (span 55)
            if s >= thr:
                good += abs(b - c['truth']) <= 1; bad += abs(b - c['truth']) > 1
        row.append(f"{thr}: {good}/{n} ({bad} wrong)")
    print(f"{f:28s}", "  ".join(row))
