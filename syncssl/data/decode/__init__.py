"""Decoding: one contract, several backends.

``decoder.decode([FrameRequest(path, frames, codec, size), ...])`` returns, per request, a uint8 tensor
(n, H, W, 3) of the frames in the requested order (duplicates allowed): CPU tensors from the CPU backends,
CUDA tensors from DALI on GPU; ``None`` for a request skipped under the :class:`FailurePolicy`.

Backends: :class:`PyAVDecoder` (any codec, CPU), :class:`DALIDecoder` on CPU (MJPEG, VP8, VP9) or on GPU
(NVDEC: H.264, HEVC, AV1, VP9, MJPEG, ...). :func:`make_decoder` picks one and says why.

Guarantees, for every backend: a codec the backend cannot decode is an error before decoding; frame indices
are checked against the file's real frame count (probed once per file, then cached) so a video shorter than
the manifest says is a DataError naming the file and the frame, never padding; every result's shape is
checked; a file that fails to decode is named. ``stats`` counts decoded frames against used frames.
The decoders keep no state between batches (the sampler's step is the pipeline's state); ``state_dict()``
holds the counters only.
"""
from __future__ import annotations

import logging

import torch

from .base import (
    DALI_CPU_CODECS,
    NVDEC_CODECS,
    Decoder,
    DecoderBase,
    DecodeStats,
    FailurePolicy,
    FrameRequest,
    VideoIndex,
    index_video,
    normalize_codec,
)
from .dali import DALIDecoder, dali_available, mini_stream
from .pyav import PyAVDecoder

__all__ = ["FrameRequest", "Decoder", "DecodeStats", "FailurePolicy",
           "PyAVDecoder", "DALIDecoder", "make_decoder", "choose_decoder", "VideoIndex", "index_video",
           "normalize_codec", "mini_stream", "dali_available", "DALI_CPU_CODECS", "NVDEC_CODECS", "DecoderBase",
           "DALI_CPU_IN_AUTO", "NVDEC_AUTO_CODECS", "probe_nvdec"]

log = logging.getLogger("syncssl.decode")

# Whether ``auto`` may pick DALI's CPU decoder. Off: on MJPEG at 320x240 it decoded 0.6x as many pairs/s as
# PyAV with a thread per core (2 cores), and 0.6x per frame single-threaded (a whole file, one sample).
DALI_CPU_IN_AUTO = False


# Codecs ``auto`` sends to NVDEC. MJPEG is left out: NVIDIA's video decoder lists it, but JPEG has its own
# hardware engine (reached through nvJPEG) and whether a given GPU's NVDEC decodes MJPEG streams is doubtful, so
# auto does not bet a run on it; ask for it with kind="dali".
NVDEC_AUTO_CODECS = NVDEC_CODECS - {"mjpeg"}


def choose_decoder(kind: str = "auto", device: str | None = None, codecs=(), probe=None) -> tuple[str, str, str]:
    """(backend, device, why) for :func:`make_decoder`, without building anything (but the probe).

    ``auto``: DALI on GPU when ``device`` is "cuda", CUDA is present, NVDEC is expected to decode every codec
    (:data:`NVDEC_AUTO_CODECS`) and ``probe()`` (if given: decoding one frame of each codec on the GPU) succeeds;
    else PyAV on CPU. DALI's CPU decoder is not picked by ``auto`` (unless :data:`DALI_CPU_IN_AUTO` is set) because it
    measured slower than PyAV on CPU, also for MJPEG (see ``syncssl.bench.decode``); ask for it with
    ``kind="dali", device="cpu"``. ``device`` None means "cuda" when CUDA is present.
    """
    codecs = sorted({normalize_codec(c) for c in codecs})
    listed = ", ".join(codecs) or "no codecs given"
    cuda = torch.cuda.is_available()
    device = device or ("cuda" if cuda else "cpu")
    if kind not in ("auto", "dali", "pyav"):
        raise ValueError(f"decoder must be 'auto', 'dali' or 'pyav', got {kind!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if kind == "pyav":
        return "pyav", "cpu", f"decoder: PyAV on CPU (asked for; codecs: {listed})"
    if kind == "dali":
        if device == "cuda" and not cuda:
            raise RuntimeError("--decoder dali on cuda: torch sees no GPU; use --device cpu or --decoder pyav")
        where = "GPU (NVDEC)" if device == "cuda" else "CPU"
        return "dali", device, f"decoder: DALI on {where} (asked for; codecs: {listed})"
    if not dali_available():
        return "pyav", "cpu", f"decoder: PyAV on CPU: NVIDIA DALI is not installed (codecs: {listed})"
    if device == "cuda" and cuda:
        if set(codecs) <= NVDEC_AUTO_CODECS:
            failure = probe() if probe is not None else None
            if not failure:
                return "dali", "cuda", f"decoder: DALI on GPU (NVDEC): CUDA is present and NVDEC decoded {listed}"
            gpu_note = f"NVDEC failed to decode a first frame ({failure})"
        else:
            gpu_note = (f"NVDEC is not trusted with {', '.join(sorted(set(codecs) - NVDEC_AUTO_CODECS))} "
                        "(ask for --decoder dali to try it)")
    else:
        gpu_note = "no CUDA" if not cuda else "device is cpu"
    if set(codecs) <= DALI_CPU_CODECS:
        if DALI_CPU_IN_AUTO:
            return "dali", "cpu", f"decoder: DALI on CPU: {gpu_note}, and DALI's CPU decoder handles {listed}"
        return "pyav", "cpu", (f"decoder: PyAV on CPU: {gpu_note}; DALI's CPU decoder handles {listed} too, but "
                               "decodes slower than PyAV on CPU (syncssl-bench decode measures it)")
    cpu_note = ", ".join(sorted(set(codecs) - DALI_CPU_CODECS))
    return "pyav", "cpu", (f"decoder: PyAV on CPU: {gpu_note}, and DALI's CPU decoder cannot decode {cpu_note} "
                           f"(it handles {', '.join(sorted(DALI_CPU_CODECS))})")


def probe_nvdec(samples: dict) -> str | None:
    """Decode frame 0 of one file per codec ({codec: path}) with DALI on the GPU: None if every one decodes,
    else what failed (the GPU decoders a device really has are found this way, not assumed)."""
    try:
        with DALIDecoder("cuda", FailurePolicy(skip=False), num_threads=1) as d:
            for codec, path in samples.items():
                d.decode([FrameRequest(path, [0], codec)])
    except Exception as e:  # noqa: BLE001 - any failure means: do not use it
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return None


def make_decoder(kind: str = "auto", device: str | None = None, codecs=(), *, policy: FailurePolicy | None = None,
                 num_threads: int | None = None, samples: dict | None = None, **options) -> DecoderBase:
    """A decoder for videos of ``codecs``; see :func:`choose_decoder` for the choice. ``samples`` ({codec: path}):
    files that ``auto`` test-decodes on the GPU before choosing NVDEC.

    The choice is logged once (logging.info) and kept in ``decoder.reason`` for the caller to print.
    ``options`` go to the backend (``max_open``; DALI: ``max_batch_size``).
    """
    backend, dev, why = choose_decoder(kind, device, codecs,
                                       probe=(lambda: probe_nvdec(samples)) if samples else None)
    decoder = (PyAVDecoder(policy, num_threads=num_threads, **options) if backend == "pyav"
               else DALIDecoder(dev, policy, num_threads=num_threads, **options))
    if backend == "dali":
        bad = {normalize_codec(c) for c in codecs} - decoder.supported_codecs
        if bad:  # asked for DALI explicitly, with a codec it cannot decode: say so now, not mid-run
            decoder.close()
            raise ValueError(decoder._unsupported(sorted(bad)[0]))
    decoder.reason = why
    log.info(why)
    return decoder
