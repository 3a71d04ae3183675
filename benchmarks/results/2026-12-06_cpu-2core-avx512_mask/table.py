import json, sys
from pathlib import Path
print(f"{'run':22s} {'steps':>5s} {'sync':>6s} {'single':>6s} {'S11':>6s} {'S9':>6s} {'flip':>6s} {'flip1':>6s} {'seen':>6s} {'wall':>5s}")
for r in sys.argv[1:]:
    f = Path(r) / "summary.json"
    if not f.exists():
        print(f"{Path(r).name:22s} (running)"); continue
    s = json.loads(f.read_text()); h = s["heldout_by_subject"]
    g = lambda k: s.get(k) if s.get(k) is not None else float("nan")
    print(f"{Path(r).name:22s} {s['steps']:5d} {g('heldout_sync_acc'):6.3f} {g('heldout_sync_acc_single'):6.3f} "
          f"{h['S11']['sync_acc']:6.3f} {h['S9']['sync_acc']:6.3f} {g('heldout_flip_acc'):6.3f} {g('heldout_flip_acc_single'):6.3f} "
          f"{g('seen_sync_acc'):6.3f} {s['wall_s']:5.0f}")
