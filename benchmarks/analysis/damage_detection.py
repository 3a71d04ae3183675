"""How much random damage syncssl's damage checks refuse, and what the rest does to the decoded frames.

For every video given (files, or folders searched for videos), writes damaged copies (random bytes at a random
offset in the middle third of the file; the size stays the same) and asks the checks of ``inspect`` (probe,
first and last frame) and ``inspect --deep`` / ``prepare`` (every frame decoded and judged). A copy the deep
check passes is *silent*; it is then decoded plainly and compared with the undamaged decode: *identical* (the
damage changed no pixel: harmless) or *different* (wrong data passed on: the case that matters). The undamaged
videos themselves are checked too: a refused clean video is a false positive.

    python benchmarks/analysis/damage_detection.py DATASET_OR_VIDEOS... --copies 10 --bytes 64 4096
    python benchmarks/analysis/damage_detection.py ... --option err_detect=explode   # try decoder options

Writes the copies under a temporary folder (removed afterwards); prints a markdown table, and with ``--json``
writes every copy's outcome.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from syncssl.data.decode import damage
from syncssl.data.decode.video import VIDEO_EXTENSIONS, probe
from syncssl.errors import DataError
from syncssl.optional import av


def videos_in(paths: list[Path]) -> list[Path]:
    found = []
    for p in paths:
        found += [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.suffix in VIDEO_EXTENSIONS)
    return found


def plain_decode(path: Path) -> list[np.ndarray] | None:
    """Every frame as FFmpeg gives it without any option or check (planar YUV), None when decoding fails."""
    try:
        with av.open(str(path)) as c:
            return [f.to_ndarray() for f in c.decode(c.streams.video[0])]
    except (av.error.FFmpegError, ValueError):
        return None


def difference(clean: list[np.ndarray], frames: list[np.ndarray] | None) -> tuple[int, int]:
    """(frames that differ, largest absolute pixel difference); a missing or extra frame counts as 255."""
    if frames is None:
        return len(clean), 255
    differ = abs(len(frames) - len(clean))
    worst = 255 if differ else 0
    for a, b in zip(clean, frames):
        if a.shape != b.shape:
            differ, worst = differ + 1, 255
            continue
        d = int(np.abs(a.astype(np.int16) - b).max())
        differ += d > 0
        worst = max(worst, d)
    return differ, worst


def verdict(path: Path, verify: str) -> str | None:
    """The refusal (DataError's problem) or None when the check passes the file."""
    try:
        probe(path, verify=verify)
    except DataError as e:
        return e.problem
    return None


def damaged_copy(src: Path, dst: Path, n: int, rng: np.random.Generator) -> int:
    data = bytearray(src.read_bytes())
    lo, hi = len(data) // 3, 2 * len(data) // 3 - n
    at = int(rng.integers(lo, max(lo + 1, hi)))
    data[at:at + n] = rng.integers(0, 256, n, np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="videos, or folders holding videos")
    parser.add_argument("--copies", type=int, default=5, help="damaged copies per video and damage size")
    parser.add_argument("--bytes", type=int, nargs="+", default=[64, 4096], help="damage sizes in bytes")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="FFmpeg decoder option for the checks (repeatable), e.g. err_detect=explode")
    parser.add_argument("--max-videos", type=int, default=0, help="use at most this many videos per codec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every copy's outcome here")
    args = parser.parse_args()
    damage.DECODER_OPTIONS.update(kv.split("=", 1) for kv in args.option)

    by_codec = defaultdict(list)
    for v in videos_in(args.paths):
        with av.open(str(v)) as c:
            by_codec[c.streams.video[0].codec_context.name].append(v)
    rng = np.random.default_rng(args.seed)
    rows, outcomes = [], []
    with tempfile.TemporaryDirectory(prefix="damage-") as tmp:
        for codec, videos in sorted(by_codec.items()):
            videos = videos[:args.max_videos] if args.max_videos else videos
            false_pos = [(v, why) for v in videos if (why := verdict(v, "all"))]
            for v, why in false_pos:
                print(f"FALSE POSITIVE {v}: {why}")
            count = {n: defaultdict(int) for n in args.bytes}
            seconds = 0.0
            for k, v in enumerate(videos):
                clean = plain_decode(v)
                for n in args.bytes:
                    for j in range(args.copies):
                        copy = Path(tmp) / f"{k}-{n}-{j}{v.suffix}"
                        at = damaged_copy(v, copy, n, rng)
                        t = time.perf_counter()
                        deep = verdict(copy, "all")
                        seconds += time.perf_counter() - t
                        default = verdict(copy, "ends")
                        differ, worst = difference(clean, plain_decode(copy)) if deep is None else (None, None)
                        kind = "refused" if deep else "silent, identical" if worst == 0 else "silent, different"
                        c = count[n]
                        c["copies"] += 1
                        c[kind] += 1
                        c["refused by inspect"] += default is not None
                        outcomes.append(dict(video=str(v), codec=codec, bytes=n, offset=at, kind=kind, deep=deep,
                                             inspect=default, frames_differ=differ, max_abs_diff=worst))
                        copy.unlink()
            for n in args.bytes:
                c = count[n]
                rows.append([codec, n, len(videos), c["copies"], c["refused by inspect"], c["refused"],
                             c["silent, identical"], c["silent, different"], len(false_pos)])
            print(f"{codec}: deep check {1000 * seconds / max(1, len(videos) * len(args.bytes) * args.copies):.0f}"
                  " ms per copy", flush=True)
    header = ["codec", "bytes", "videos", "copies", "refused by inspect", "refused by inspect --deep",
              "silent, pixel-identical", "silent, different", "clean videos refused"]
    print(f"\ndecoder options: {damage.DECODER_OPTIONS or 'none'}")
    print("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")
    if args.json:
        args.json.write_text(json.dumps(dict(options=damage.DECODER_OPTIONS, rows=rows, copies=outcomes), indent=1))


if __name__ == "__main__":
    main()
