"""The GPU check's first step: what this machine is (GPU, driver, CUDA, torch, triton, CPUs, memory, optional
packages), written as JSON; exits 1 when torch sees no CUDA device (unless GPU_CHECK_NO_GPU=1: a CPU rehearsal).

    python benchmarks/gpu_environment.py OUT.json
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def main(out: str) -> int:
    import torch

    from syncssl.optional import Optional
    from syncssl.parallel import usable_cpus

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cpus_usable": usable_cpus(), "cpus_machine": os.cpu_count(),
           "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)}
    for name in ("triton", "av", "nvidia.dali", "cv2"):
        env[name] = Optional(name, name).available()
    if env["triton"]:
        import triton
        env["triton"] = triton.__version__
    env["cuda_available"] = torch.cuda.is_available()
    if env["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_count=torch.cuda.device_count(), gpu_memory_gb=round(p.total_memory / 1e9, 1),
                   sm_count=p.multi_processor_count, capability=f"{p.major}.{p.minor}",
                   bf16=torch.cuda.is_bf16_supported())
    try:
        env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                            "--format=csv,noheader"], capture_output=True, text=True,
                                           timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        env["nvidia_smi"] = f"not available ({e})"
    Path(out).write_text(json.dumps(env, indent=1) + "\n")
    print(json.dumps(env, indent=1))
    print(f"{env.get('gpu', 'no GPU')}, torch {env['torch']}, CUDA {env['cuda']}, triton {env['triton']}, "
          f"PyAV {'yes' if env['av'] else 'no'}, DALI {'yes' if env['nvidia.dali'] else 'no'}, "
          f"{env['cpus_usable']} usable CPUs")
    if not env["cuda_available"] and os.environ.get("GPU_CHECK_NO_GPU") != "1":
        print("torch sees no CUDA device: the GPU steps cannot run (is this torch a CUDA build?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
