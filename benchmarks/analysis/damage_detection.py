"""How much random damage syncssl's damage checks refuse, and what the rest does to the decoded frames.

For every video given (files, or folders searched for videos), writes damaged copies (random bytes at a random
offset in the middle third of the file; the size stays the same) and asks the checks of ``inspect`` (probe,
first and last frame) and ``inspect --deep`` / ``prepare`` (every frame decoded and judged), once without the
pixel witness and once with it, to count what each catches. A copy the deep check passes is *silent*; it is then
decoded plainly and compared with the undamaged decode: *harmless* (no pixel off by more than 2 grey levels) or
*wrong* (wrong data passed on: the case that matters). The undamaged videos themselves are checked too: a
refused clean video is a false positive; their highest pixel-witness score against its threshold is the margin.
``--clean`` videos are only checked and scored, not damaged (large real footage, transcodes).

    python benchmarks/analysis/damage_detection.py DATASET_OR_VIDEOS... --copies 10 --bytes 64 4096
    python benchmarks/analysis/damage_detection.py ... --option err_detect=explode   # try decoder options
    python benchmarks/analysis/damage_detection.py --clean REAL_VIDEOS...             # false positives, margin
    python benchmarks/analysis/damage_detection.py --prepare DATASET                  # prepare's cost of the pixels

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

PIXEL_PHRASE = "changes at once"  # in the pixel witness's refusals
HARMLESS = 2  # grey levels: a silent copy whose every pixel is this close to the undamaged decode is harmless


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


def verdict(path: Path, verify: str, pixels: bool = True) -> str | None:
    """The refusal (DataError's problem) or None when the check passes the file; ``pixels``: with the pixel
    witness."""
    return check(path, verify, pixels)[0]


def check(path: Path, verify: str, pixels: bool = True) -> tuple[str | None, str]:
    """(the refusal or None, the suspect frames named or "")."""
    saved = dict(damage.PIXEL_THRESHOLD)
    if not pixels:
        damage.PIXEL_THRESHOLD.update({k: float("inf") for k in saved})
    try:
        return None, probe(path, verify=verify).suspect
    except DataError as e:
        return e.problem, ""
    finally:
        damage.PIXEL_THRESHOLD.update(saved)


def pixel_scores(path: Path) -> tuple[float, int, str]:
    """The pixel witness's highest score over the video's frames: (score, frame, where)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        check = damage.PixelCheck(s.codec_context.name)
        best = (0.0, 0, "")
        for i, packet in enumerate(c.demux(s)):
            data = bytes(packet) if packet.size else None
            for f in s.codec_context.decode(packet if data else None):
                score, where = check.score(f, data)
                best = max(best, (score, i, where))
    return best


def damaged_copy(src: Path, dst: Path, n: int, rng: np.random.Generator) -> int:
    data = bytearray(src.read_bytes())
    lo, hi = len(data) // 3, 2 * len(data) // 3 - n
    at = int(rng.integers(lo, max(lo + 1, hi)))
    data[at:at + n] = rng.integers(0, 256, n, np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="videos, or folders holding videos")
    parser.add_argument("--clean", nargs="+", type=Path, default=[], help="videos only checked and scored")
    parser.add_argument("--copies", type=int, default=5, help="damaged copies per video and damage size")
    parser.add_argument("--bytes", type=int, nargs="+", default=[64, 4096], help="damage sizes in bytes")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="FFmpeg decoder option for the checks (repeatable), e.g. err_detect=explode")
    parser.add_argument("--max-videos", type=int, default=0, help="use at most this many videos per codec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every copy's outcome here")
    parser.add_argument("--prepare", type=Path, help="time prepare of this dataset with and without the pixel witness")
    args = parser.parse_args()
    damage.DECODER_OPTIONS.update(kv.split("=", 1) for kv in args.option)
    if args.prepare:
        return time_prepare(args.prepare)

    by_codec = defaultdict(list)
    for v in videos_in(args.paths) + videos_in(args.clean):
        with av.open(str(v)) as c:
            by_codec[c.streams.video[0].codec_context.name].append(v)
    damaged_ones = set(videos_in(args.paths))
    rng = np.random.default_rng(args.seed)
    rows, clean_rows, outcomes = [], [], []
    with tempfile.TemporaryDirectory(prefix="damage-") as tmp:
        for codec, videos in sorted(by_codec.items()):
            checked = {v: check(v, "all") for v in videos}
            false_pos = [(v, why) for v, (why, _) in checked.items() if why]
            for v, why in false_pos:
                print(f"FALSE POSITIVE {v}: {why}")
            suspect = [v for v, (_, named) in checked.items() if named]
            if codec in damage.PIXEL_THRESHOLD:
                score, frame, where, worst = max((*pixel_scores(v), v) for v in videos)
                clean_rows.append([codec, len(videos), len(false_pos), len(suspect), f"{score:.1f}",
                                   f"{damage.PIXEL_SUSPECT[codec]:.1f}", f"{damage.PIXEL_THRESHOLD[codec]:.1f}"])
                print(f"{codec}: highest clean pixel score {score:.1f} ({worst}, frame {frame}, {where})")
            else:
                clean_rows.append([codec, len(videos), len(false_pos), len(suspect), "-", "-", "-"])
            videos = [v for v in videos if v in damaged_ones]
            videos = videos[:args.max_videos] if args.max_videos else videos
            count = {n: defaultdict(int) for n in args.bytes}
            seconds = 0.0
            for k, v in enumerate(videos):
                clean = plain_decode(v)
                for n in args.bytes:
                    for j in range(args.copies):
                        copy = Path(tmp) / f"{k}-{n}-{j}{v.suffix}"
                        at = damaged_copy(v, copy, n, rng)
                        t = time.perf_counter()
                        deep, suspect = check(copy, "all")
                        seconds += time.perf_counter() - t
                        before = verdict(copy, "all", pixels=False)
                        default = verdict(copy, "ends")
                        differ, worst = difference(clean, plain_decode(copy)) if not (deep or before) else (None, None)
                        by_pixels = deep is not None and before is None and PIXEL_PHRASE in deep
                        kind = ("refused by the pixels" if by_pixels else "refused by the other witnesses" if deep
                                or before else "silent, harmless" if worst <= HARMLESS else
                                "named suspect" if suspect else "silent, wrong")
                        c = count[n]
                        c["copies"] += 1
                        c[kind] += 1
                        c["refused by inspect"] += default is not None
                        outcomes.append(dict(video=str(v), codec=codec, bytes=n, offset=at, kind=kind, deep=deep,
                                             inspect=default, frames_differ=differ, max_abs_diff=worst))
                        copy.unlink()
            for n in args.bytes if videos else []:
                c = count[n]
                rows.append([codec, n, len(videos), c["copies"], c["refused by inspect"],
                             c["refused by the other witnesses"], c["refused by the pixels"], c["named suspect"],
                             c["silent, harmless"], c["silent, wrong"]])
            if videos:
                print(f"{codec}: deep check {1000 * seconds / (len(videos) * len(args.bytes) * args.copies):.0f}"
                      " ms per copy", flush=True)
    print(f"\ndecoder options: {damage.DECODER_OPTIONS or 'none'}")
    table(["codec", "bytes", "videos", "copies", "refused by inspect", "refused by inspect --deep, other witnesses",
           "refused only by the pixels", "passed, frames named suspect",
           f"silent, harmless (<= {HARMLESS} grey levels)", "silent, wrong"], rows)
    table(["codec", "clean videos", "clean videos refused", "clean videos with suspect frames", "highest pixel score",
           "suspect from", "refused from"], clean_rows)
    if args.json:
        args.json.write_text(json.dumps(dict(options=damage.DECODER_OPTIONS, rows=rows, clean=clean_rows,
                                             copies=outcomes), indent=1))


def time_prepare(root: Path, repeats: int = 3) -> None:
    """prepare (one worker) with the pixel witness and without it, alternating; best of ``repeats`` each."""
    from syncssl.data.preparation.prepare import prepare
    from syncssl.data.sources import open_dataset
    saved, best = dict(damage.PIXEL_THRESHOLD), {}
    with tempfile.TemporaryDirectory(prefix="prepare-") as tmp:
        for r in range(repeats):
            for pixels in (False, True):
                damage.PIXEL_THRESHOLD.clear()
                damage.PIXEL_THRESHOLD.update(saved if pixels else {})
                t = time.perf_counter()
                prepare(open_dataset(root), Path(tmp) / f"{r}-{pixels}", workers=1)
                best[pixels] = min(best.get(pixels, float("inf")), time.perf_counter() - t)
    damage.PIXEL_THRESHOLD.update(saved)
    print(f"prepare {root}: {best[False]:.2f} s without the pixel witness, {best[True]:.2f} s with it "
          f"(x{best[True] / best[False]:.3f})")


def table(header: list[str], rows: list[list]) -> None:
    print("\n| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")

if __name__ == "__main__":
    main()
