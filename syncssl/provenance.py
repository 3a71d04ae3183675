"""Where a result came from: the ``env`` block that every run's summary.json and every benchmark's JSON carry.

A number means little without the code, the libraries and the machine that produced it, so each result records
them: the commit (and whether the checkout had uncommitted changes), the versions of the packages that decide
speed and numerics, the CPU model and the SIMD features the kernels dispatch on, the GPU, and the date (UTC).
Nothing here imports torch: its version comes from the package metadata, and the GPU is asked of torch only
when the caller has already imported it.
"""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# The distributions whose versions are recorded (DALI's name carries its CUDA major: matched by prefix).
PACKAGES = ("syncssl", "torch", "triton", "nvidia-dali", "av", "numpy")
# CPU features the C++ kernel and AMP depend on (AVX-512 / AVX2 paths, bf16 autocast).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile", "neon", "asimd")
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def git_commit(root: Path = SOURCE_ROOT) -> dict:
    """The checkout's commit and whether tracked files differ from it; None for both outside a checkout."""
    if not ((root / ".git").exists() and (root / "pyproject.toml").exists()):
        return {"commit": None, "dirty": None}  # an installed copy: no source tree to ask
    try:
        run = dict(cwd=root, capture_output=True, text=True, timeout=10, check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout
        return {"commit": commit, "dirty": bool(changes.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict:
    """Installed versions of :data:`PACKAGES` (None: not installed)."""
    found = {name: None for name in PACKAGES}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        for wanted in PACKAGES:
            if name == wanted or (wanted == "nvidia-dali" and name.startswith("nvidia-dali")):
                found[wanted] = dist.version if wanted != "nvidia-dali" else f"{name} {dist.version}"
    return found


def cpu() -> dict:
    """CPU model, logical cores and the SIMD features among :data:`CPU_FLAGS` (from /proc/cpuinfo where it exists)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in CPU_FLAGS if f in flags]}


def gpu() -> str | None:
    """The first CUDA device's name, when torch is already imported and sees one."""
    torch = sys.modules.get("torch")
    try:
        return torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else None
    except (RuntimeError, AssertionError):  # a driver that fails, or a build without CUDA: no GPU to name
        return None


def device_name() -> str:
    """What a benchmark ran on, in one line: the first GPU's name, else the CPU model and its core count."""
    name = gpu()
    if name:
        return name
    info = cpu()
    return f"cpu: {info['model']}, {info['cores']} cores"


def env_block() -> dict:
    """Commit, dirty flag, package versions, CPU, GPU, Python and the date: JSON-ready."""
    return {
        **git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "cpu": cpu(),
        "gpu": gpu(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
