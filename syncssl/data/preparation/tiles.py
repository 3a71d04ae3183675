"""Person tiles: every frame of every camera decoded once, the region around the person stored as a random-access
record, so that training reads small tiles instead of seeking into videos.

A tile set lives in ``<prepared>/tiles/<spec>/`` (several specs may coexist: each training config asks for the
one its crop size and jitter need)::

    meta.json          format, tile size, margin, count, the manifest it was cut for, a CRC-32 per block
    frames.u8          raw: uint8 (N, S, S, 3) memory-mapped;  or
    frames.jpg         JPEG records, one block after another, with jpg_index.npy (N, 2) int64 byte ranges
    backgrounds.u8     raw only: each tile's background (the camera's model cut with the same rect)
    rects.npy          float32 (N, 4): the frame region each tile holds, x0 y0 x1 y1 in pixel edges

Row ``offset(sequence) + camera * T + t`` holds frame t of that camera. A *block* is one (sequence, camera): one
video, written by one decoding task, checksummed on its own, so a damaged block is found and rebuilt alone.
``meta.json`` is written last: a set without it is incomplete and is rebuilt.

A tile holds the square of side ``margin`` x the crop box's side around the crop box's centre: room for the
largest crop jitter the sampler applies, at a resolution at least that of the finest crop it samples
(:meth:`TileSpec.for_jitter`). Near the frame's edge the region is clipped to the frame and stretched to the
tile's size (:func:`syncssl.data.preparation.boxes.tile_rect`), so every stored pixel is a real one and the assemble op,
which treats pixels outside a bank frame as missing, fills the rest exactly as it does for a whole frame.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import threading
import zlib
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ...parallel import usable_cpus

TILES_VERSION = 1
FORMATS = ("raw", "jpeg", "auto")  # auto: raw when the set fits the memory budget, else JPEG (resolve_format)


@dataclass(frozen=True)
class TileSpec:
    """What a tile set holds; part of its folder name and its fingerprint."""

    size: int  # S_t: tile side in pixels
    margin: float  # tile side / crop box side
    format: str = "raw"  # "raw" (memory-mapped uint8) | "jpeg" (records, decoded by DALI or Pillow) | "auto"
    backgrounds: bool = True  # raw: store each tile's background too (else it is cut from the model per batch)
    jpeg_quality: int = 90

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"tile format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.size < 8 or not self.margin >= 1.0:
            raise ValueError(f"tiles need size >= 8 and margin >= 1, got {self.size}, {self.margin}")

    @classmethod
    def for_jitter(cls, crop_size: int, shift: float, log_scale: float, density: float = 1.4, **kw) -> TileSpec:
        """The tile that holds every crop the sampler can draw (box shifted by up to ``shift`` sides, scaled by up
        to exp(``log_scale``)): margin = 2 shift + exp(log_scale) (rounded up to 1/100), at ``density`` x the
        resolution of the finest crop (the box shrunk by exp(-log_scale) and sampled at ``crop_size``): side =
        crop_size x margin x exp(log_scale) x density, rounded up to a multiple of 8. A tile only as dense as the
        crop makes the crop's bilinear resampling blur it a second time: measured on the synthetic data, the op's
        mask IoU was 0.829 at density 1 (88 px for 64 px crops), 0.845 at 1.4 (128 px), 0.850 at 2 (176 px), 0.853
        from the frames."""
        margin = math.ceil((2 * shift + math.exp(log_scale)) * 100 - 1e-6) / 100
        size = int(math.ceil(crop_size * margin * math.exp(log_scale) * density / 8 - 1e-9) * 8)
        return cls(size=size, margin=margin, **kw)

    @property
    def name(self) -> str:
        return f"s{self.size}-m{self.margin:.2f}-{self.format}"

    def bytes_per_tile(self) -> int:
        return self.size * self.size * 3

    def raw_bytes(self, count: int) -> int:
        """Bytes of a raw set of ``count`` tiles (with their backgrounds when stored)."""
        return count * self.bytes_per_tile() * (2 if self.backgrounds else 1)


def memory_bytes() -> int:
    """This machine's physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def resolve_format(spec: TileSpec, count: int, budget: float = 0.5) -> TileSpec:
    """``auto`` -> ``raw`` when the raw set fits ``budget`` x this machine's memory (random reads then come from
    the page cache), else ``jpeg`` (about a tenth of the bytes, decoded per batch)."""
    if spec.format != "auto":
        return spec
    from dataclasses import replace
    fits = spec.raw_bytes(count) <= budget * memory_bytes()
    return replace(spec, format="raw" if fits else "jpeg", backgrounds=spec.backgrounds and fits)


@dataclass
class TileLayout:
    """Where each block's rows start: blocks in manifest order (sequence by sequence, camera by camera)."""

    keys: list[str]  # sequence keys, manifest order
    frames: list[int]  # T per sequence
    cameras: list[int]  # C per sequence

    @cached_property
    def offsets(self) -> np.ndarray:  # cached: row() runs for every view of every batch
        return np.concatenate([[0], np.cumsum(np.multiply(self.frames, self.cameras))]).astype(np.int64)

    @cached_property
    def _frames_array(self) -> np.ndarray:
        return np.asarray(self.frames, np.int64)

    @property
    def count(self) -> int:
        return int(self.offsets[-1])

    def row(self, seq, cam, t) -> np.ndarray | np.int64:
        """The row of (sequence, camera, frame); each may be an int or an array (broadcast)."""
        seq = np.asarray(seq, np.int64)
        return self.offsets[seq] + np.asarray(cam, np.int64) * self._frames_array[seq] + np.asarray(t, np.int64)

    def blocks(self) -> list[tuple[int, int, int, int]]:
        """(sequence index, camera index, first row, rows) of every block."""
        off = self.offsets
        return [(i, c, int(off[i]) + c * T, T) for i, (T, C) in enumerate(zip(self.frames, self.cameras))
                for c in range(C)]


def tile_folder(prepared: Path, spec: TileSpec) -> Path:
    return Path(prepared) / "tiles" / spec.name


# ---------------------------------------------------------------- writing


def allocate(folder: Path, spec: TileSpec, count: int) -> None:
    """Create (or resize) the raw files of a set, before decoding tasks write their blocks into them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # incomplete until written again
    names = ["frames.u8"] + (["backgrounds.u8"] if spec.backgrounds else []) if spec.format == "raw" else []
    for name in names:
        with open(folder / name, "ab") as f:
            f.truncate(count * spec.bytes_per_tile())
            if count and hasattr(os, "posix_fallocate"):
                # reserve the blocks now: a full disk then fails here with ENOSPC, not in a worker's memory-mapped
                # write (SIGBUS)
                os.posix_fallocate(f.fileno(), 0, count * spec.bytes_per_tile())


def open_rows(folder: Path, spec: TileSpec, count: int, name: str = "frames.u8", mode: str = "r") -> np.memmap:
    return np.memmap(folder / name, np.uint8, mode, shape=(count, spec.size, spec.size, 3))


_mapped: dict[tuple, np.ndarray] = {}  # one mapping per file per process, shared by every store (see map_rows)
_mapping_lock = threading.Lock()


def map_rows(folder: Path, spec: TileSpec, count: int, name: str = "frames.u8") -> np.ndarray:
    """Read-only rows for training, with the page tables filled up front (``MAP_POPULATE``, Linux), mapped once per
    process: every store of the same file (training's, each evaluation split's) shares the mapping. Each mapping
    of its own would be populated again and counted again in the resident memory: the 4.2 GB tile store of the
    main job read 13 GB peak RSS with three (the page cache is shared, but a job's memory limit sees RSS).

    Training gathers random tiles: on a plain mapping every first touch of a page is a fault, which made a batch's
    gather 8x slower for the first few thousand steps (1.5 ms against 0.19 ms for 64 tiles here). Populating maps
    the 2.2 GiB of the small dataset in ~0.15 s when the file is in the page cache (raw tiles are chosen only when
    they fit half the memory; from disk it reads the file once, as training would anyway)."""
    path = folder / name
    size = count * spec.size * spec.size * 3
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    with _mapping_lock, open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size, count, spec.size)  # a rebuilt set
        if key in _mapped:  # maps anew
            return _mapped[key]
        if stat.st_size < size:
            raise DataError(path, f"holds {stat.st_size} bytes, expected {size}; run prepare again")
        if size == 0:
            return np.empty((0, spec.size, spec.size, 3), np.uint8)
        mapped = mmap.mmap(f.fileno(), size, flags=flags, prot=mmap.PROT_READ)
        for old in [k for k in _mapped if k[0] == key[0]]:  # an older version of the file: its arrays keep it
            del _mapped[old]
        rows = _mapped[key] = np.frombuffer(mapped, np.uint8).reshape(count, spec.size, spec.size, 3)
    return rows


def write_block(folder: Path, spec: TileSpec, count: int, first: int, tiles: np.ndarray,
                backgrounds: np.ndarray | None) -> None:
    """Raw format: a block's tiles (and backgrounds) into their rows, from a decoding task."""
    rows = open_rows(folder, spec, count, mode="r+")
    rows[first:first + len(tiles)] = tiles
    rows.flush()
    if backgrounds is not None:
        bg = open_rows(folder, spec, count, "backgrounds.u8", mode="r+")
        bg[first:first + len(backgrounds)] = backgrounds
        bg.flush()


def encode_jpeg(tiles: np.ndarray, quality: int) -> list[bytes]:
    """JPEG records of uint8 tiles (n, S, S, 3), 4:2:0, with Pillow (libjpeg-turbo)."""
    import io

    from PIL import Image
    out = []
    for t in tiles:
        buf = io.BytesIO()
        Image.fromarray(t).save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def block_crc(folder: Path, spec: TileSpec, count: int, first: int, rows: int,
              jpg_index: np.ndarray | None = None) -> int:
    """CRC-32 of a block's bytes (frames, then backgrounds)."""
    if spec.format == "jpeg":
        lo, hi = int(jpg_index[first, 0]), int(jpg_index[first + rows - 1, 1])  # a block's records are contiguous
        with open(folder / "frames.jpg", "rb") as f:
            f.seek(lo)
            return zlib.crc32(f.read(hi - lo))
    crc = 0
    for name in ["frames.u8"] + (["backgrounds.u8"] if spec.backgrounds else []):
        crc = zlib.crc32(memoryview(open_rows(folder, spec, count, name)[first:first + rows]).cast("B"), crc)
    return crc


def write_meta(folder: Path, spec: TileSpec, layout: TileLayout, manifest_digest: str, crcs: list[int],
               stats: dict) -> None:
    meta = dict(version=TILES_VERSION, spec=asdict(spec), manifest=manifest_digest, count=layout.count,
                keys=layout.keys, frames=layout.frames, cameras=layout.cameras, crc32=crcs, stats=stats)
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, folder / "meta.json")


# ---------------------------------------------------------------- checking


def check(folder: Path, spec: TileSpec, layout: TileLayout, manifest_digest: str) -> tuple[str, list[int]]:
    """Why the set must be rebuilt as a whole ("" if it need not), and which blocks are damaged (by index in
    ``layout.blocks()``): missing meta, another manifest or spec, files of the wrong size, or a CRC mismatch."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return "no complete tile set", []
    if meta.get("version") != TILES_VERSION or meta.get("spec") != asdict(spec):
        return "the tile set was made with other settings", []
    if meta.get("manifest") != manifest_digest or (meta.get("keys"), meta.get("frames"), meta.get("cameras")) != \
            (layout.keys, layout.frames, layout.cameras):
        return "the tiles were cut for another manifest (boxes changed)", []
    try:
        if spec.format == "raw":
            names = ["frames.u8"] + (["backgrounds.u8"] if spec.backgrounds else [])
            if any((folder / n).stat().st_size != layout.count * spec.bytes_per_tile() for n in names):
                return "tile files have the wrong size", []
            index = None
        else:
            index = np.load(folder / "jpg_index.npy")
            if index.shape != (layout.count, 2) or (folder / "frames.jpg").stat().st_size != index[:, 1].max():
                return "the JPEG records do not match their index", []
        if not (folder / "rects.npy").is_file() or np.load(folder / "rects.npy").shape != (layout.count, 4):
            return "tile rects are missing", []
        crcs = meta.get("crc32", [])
        damaged = [k for k, (_, _, first, rows) in enumerate(layout.blocks())
                   if k >= len(crcs) or block_crc(folder, spec, layout.count, first, rows, index) != crcs[k]]
    except (OSError, ValueError) as e:
        return f"tile files are unreadable ({e})", []
    return "", damaged


# ---------------------------------------------------------------- reading


def _gather(mapped: np.ndarray, rows: np.ndarray, pin: bool) -> torch.Tensor:
    """Rows of a mapped set copied into memory the tensor owns (page-locked with ``pin``)."""
    out = torch.empty((len(rows), *mapped.shape[1:]), dtype=torch.uint8, pin_memory=pin)
    np.take(mapped, rows, axis=0, out=out.numpy())
    return out


class TileStore:
    """Random access to a tile set: ``frames(rows)`` and ``backgrounds(rows)`` as uint8 (n, S, S, 3) CPU tensors.

    Raw sets are memory-mapped once per process (a gather is a copy of n tiles out of the page cache); JPEG sets are
    decoded by DALI's image decoder (nvJPEG for a GPU, libjpeg-turbo on CPU) when DALI is installed, else by
    Pillow. Thread-safe: each thread gets its own DALI pipelines.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        try:
            meta = json.loads((self.folder / "meta.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError) as e:
            raise DataError(self.folder, f"no complete tile set here ({e}); run prepare again") from None
        self.spec = TileSpec(**meta["spec"])
        self.count = int(meta["count"])
        self.layout = TileLayout(meta["keys"], meta["frames"], meta["cameras"])
        self.rects = torch.from_numpy(np.load(self.folder / "rects.npy"))
        self.stats = meta.get("stats", {})
        if self.spec.format == "raw":
            self._frames = map_rows(self.folder, self.spec, self.count)
            self._backgrounds = (map_rows(self.folder, self.spec, self.count, "backgrounds.u8")
                                 if self.spec.backgrounds else None)
        else:
            self._index = np.load(self.folder / "jpg_index.npy")
            self._records = np.memmap(self.folder / "frames.jpg", np.uint8, "r")
            self._backgrounds = None
            self._local = threading.local()

    @property
    def has_backgrounds(self) -> bool:
        return self._backgrounds is not None

    def frames(self, rows: np.ndarray, pin: bool = False, device: torch.device | None = None) -> torch.Tensor:
        """Tiles ``rows`` as uint8 (n, S, S, 3). Raw sets: ``pin`` gathers them straight into page-locked memory, so
        that the upload is one asynchronous copy. JPEG sets: decoded on ``device`` by nvJPEG when it is a GPU and
        DALI is installed (a CUDA tensor), else on the CPU."""
        rows = np.asarray(rows, np.int64)
        if self.spec.format == "raw":
            return _gather(self._frames, rows, pin)
        return self._decode_jpeg(rows, device)

    def backgrounds(self, rows: np.ndarray, pin: bool = False) -> torch.Tensor:
        if self._backgrounds is None:
            raise ValueError("this tile set stores no backgrounds")
        return _gather(self._backgrounds, np.asarray(rows, np.int64), pin)

    def _decode_jpeg(self, rows: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        encoded = [self._records[self._index[r, 0]:self._index[r, 1]] for r in rows.tolist()]
        S = self.spec.size
        gpu = device.index if device is not None and device.type == "cuda" else None
        pipe = self._pipeline(len(encoded), gpu)
        if pipe is None:
            import io

            from PIL import Image
            out = np.stack([np.asarray(Image.open(io.BytesIO(e.tobytes())).convert("RGB")) for e in encoded])
        else:
            pipe.feed_input("encoded", [np.asarray(e) for e in encoded])
            (images,) = pipe.run()
            shapes = {tuple(images[k].shape()) for k in range(len(encoded))}
            if shapes != {(S, S, 3)}:
                raise DataError(self.folder / "frames.jpg",
                                f"records decoded to {sorted(shapes)}, expected ({S}, {S}, 3)")
            if gpu is not None:  # nvJPEG wrote the tiles on the GPU: copy them into a tensor there, on this stream
                from nvidia.dali.plugin.pytorch import feed_ndarray
                out = torch.empty((len(encoded), S, S, 3), dtype=torch.uint8, device=device)
                feed_ndarray(images.as_tensor(), out, cuda_stream=torch.cuda.current_stream(device))
                return out
            out = np.stack([np.asarray(images[k]) for k in range(len(encoded))])
        if out.shape[1:] != (S, S, 3):
            raise DataError(self.folder / "frames.jpg", f"a record decoded to {out.shape[1:]}, expected ({S}, {S}, 3)")
        return torch.from_numpy(out)

    def _pipeline(self, batch: int, gpu: int | None = None):
        """This thread's DALI pipeline: libjpeg-turbo on the CPU, or nvJPEG on GPU ``gpu`` (the "mixed" decoder:
        Huffman decoding on the CPU, the rest on the GPU, or the A100/H100 hardware JPEG engine)."""
        from ..decode import dali_available
        if not dali_available():
            return None
        pipes = self._local.__dict__.setdefault("pipes", {})
        pipe, size = pipes.get(gpu, (None, 0))
        if pipe is None or size < batch:
            from nvidia.dali import fn, types
            from nvidia.dali.pipeline import Pipeline
            size = max(batch, size)
            pipe = Pipeline(batch_size=size, num_threads=max(1, min(4, usable_cpus())), device_id=gpu,
                            exec_async=False, exec_pipelined=False, prefetch_queue_depth=1)
            with pipe:
                encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
                pipe.set_outputs(fn.decoders.image(encoded, device="cpu" if gpu is None else "mixed",
                                                   output_type=types.RGB))
            pipe.build()
            pipes[gpu] = pipe, size
        return pipe


def frame_to_tile(boxes: torch.Tensor, rects: torch.Tensor, size: int) -> torch.Tensor:
    """Boxes (n, 4) in frame coordinates -> the same boxes in the coordinates of tiles of side ``size`` that hold
    the frame regions ``rects`` (n, 4) (pixel edges both)."""
    scale = size / (rects[:, 2:] - rects[:, :2])
    return torch.cat([(boxes[:, :2] - rects[:, :2]) * scale, (boxes[:, 2:] - rects[:, :2]) * scale], 1).float()

