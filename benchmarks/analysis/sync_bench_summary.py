"""Summarise `syncssl-bench sync` results (sync_bench.json): cameras within 1 frame, determined, the first search,
best peaks, misses per subject and committed cameras that are wrong; with --thresholds, how many cameras each
support threshold would place (and how many of those wrongly), from the joint search's best peaks.

    python benchmarks/analysis/sync_bench_summary.py runs/bench-sync*/sync_bench.json [--thresholds 0.9,0.8,0.7]
"""
import argparse
import collections
import json
from pathlib import Path


def within_one(estimate, truth) -> bool:
    return estimate is not None and abs(estimate - truth) <= 1


def summary_line(name: str, report: dict) -> str:
    misses, wrong = collections.Counter(), 0
    for camera in report["per_camera"]:
        if not within_one(camera["joint"], camera["truth"]):
            misses[camera["sequence"].split("/")[0]] += 1
            wrong += camera["joint"] is not None
    first = (report.get("first_search") or {}).get("within_1_frame")
    return (f"{name}: within 1 frame {report['joint']['within_1_frame']:.3f}, determined "
            f"{report['joint']['determined']:.3f}, first search {'-' if first is None else f'{first:.3f}'}, best peak "
            f"{report['best_peak_within_1_frame']:.3f}, misses by subject {dict(misses)}, committed and wrong {wrong}")


def threshold_line(name: str, report: dict, thresholds: list[float]) -> str:
    # a peak at (or next to) the end of the search range is never trusted
    edge = round(report["search_max_offset_s"] / report["max_offset_s"] * report["max_offset_frames"]) - 1
    cells = []
    for threshold in thresholds:
        right = wrong = 0
        for camera in report["per_camera"]:
            best, support = camera["joint_best"], camera["support"]
            if best is None or support is None or support != support or abs(best) >= edge or support < threshold:
                continue
            right += within_one(best, camera["truth"])
            wrong += not within_one(best, camera["truth"])
        cells.append(f"{threshold:g}: {right}/{len(report['per_camera'])} ({wrong} wrong)")
    return f"{name}: " + "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="sync_bench.json files")
    parser.add_argument("--thresholds", default=None, help="comma-separated support thresholds to compare")
    args = parser.parse_args()
    for path in sorted(args.reports):
        report = json.loads(path.read_text())
        print(summary_line(str(path), report))
        if args.thresholds:
            print(threshold_line(str(path), report, [float(t) for t in args.thresholds.split(",")]))


if __name__ == "__main__":
    main()
