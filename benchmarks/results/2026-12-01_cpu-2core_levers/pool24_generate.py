from dataclasses import replace
from pathlib import Path
from syncssl.data.synthetic.generator import get_preset, generate_report
if __name__ == "__main__":
    p = replace(get_preset("small"), pool_subjects=24, pool_actions=2)
    r = generate_report(Path("data/synthetic-small-pool24"), p, seed=0, progress=False)
    print("generated", r.sequences, "sequences in", round(r.seconds), "s")
