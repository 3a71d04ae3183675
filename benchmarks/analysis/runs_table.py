"""One line per pre-training run: held-out sync and flip (mirror-averaged and single pass), per held-out subject,
seen sync, wall time and the commit that trained it, read from each run's summary.json.

    python benchmarks/analysis/runs_table.py runs/pretrain runs/other ...
    python benchmarks/analysis/runs_table.py benchmarks/results/*/train/*.summary.json
"""
import argparse
import json
from pathlib import Path


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="pre-training run folders or their summary JSON files")
    args = parser.parse_args()
    summaries = {run.with_name(run.name.removesuffix(".json").removesuffix(".summary")) if run.is_file() else run:
                 run if run.is_file() else run / "summary.json" for run in args.runs}
    subjects = sorted({s for f in summaries.values() if f.exists()
                       for s in json.loads(f.read_text()).get("heldout_by_subject", {})})
    header = ["run", "steps", "sync", "single", *subjects, "flip", "single", "seen sync", "wall s", "commit"]
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for run, path in summaries.items():
        if not path.exists():
            print(f"| {run.name} | (no summary.json) |")
            continue
        s = json.loads(path.read_text())
        by = s.get("heldout_by_subject", {})
        commit = (s.get("env") or {}).get("commit") or "-"
        cells = [run.name, str(s["steps"]), fmt(s.get("heldout_sync_acc")), fmt(s.get("heldout_sync_acc_single")),
                 *(fmt(by.get(subject, {}).get("sync_acc")) for subject in subjects),
                 fmt(s.get("heldout_flip_acc")), fmt(s.get("heldout_flip_acc_single")), fmt(s.get("seen_sync_acc")),
                 f"{s['wall_s']:.0f}", commit[:7]]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
