import json, sys, collections
for f in sorted(sys.argv[1:]):
    d = json.load(open(f))
    j = d['joint']; fs = d.get('first_search') or {}
    miss = collections.Counter(); wrong = 0
    for c in d['per_camera']:
        est = c['joint']
        if est is None or abs(est - c['truth']) > 1:
            miss[c['sequence'].split('/')[0]] += 1
            wrong += est is not None
    print(f"{f:20s} within1 {j['within_1_frame']:.3f} det {j['determined']:.3f} first {fs.get('within_1_frame', float('nan')):.3f} "
          f"best {d['best_peak_within_1_frame']:.3f} misses {dict(miss)} committed-wrong {wrong} ({d['seconds']:.0f} s)")
