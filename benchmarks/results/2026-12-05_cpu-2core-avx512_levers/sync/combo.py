import json, sys
def ok(e, t): return e is not None and abs(e - t) <= 1
for f in sorted(sys.argv[1:]):
    d = json.load(open(f)); n = len(d['per_camera'])
    J = D = C = Cw = Jw = Dw = 0
    for c in d['per_camera']:
        t = c['truth']; j, dd = c['joint'], c['direct']
        J += ok(j, t); D += ok(dd, t); Jw += j is not None and not ok(j, t); Dw += dd is not None and not ok(dd, t)
        e = j if j is not None else dd
        C += ok(e, t); Cw += e is not None and not ok(e, t)
    print(f"{f:20s} joint {J}/{n} (wrong {Jw})  direct {D} (wrong {Dw})  joint-else-direct {C} (wrong {Cw})")
