"""Distributed training on CPU (gloo): two "nodes" on one machine against one process, a node killed mid-run, the
wait for rank 0's dataset, the GPU each process picks, SLURM's GPU count, and the CPUs a job may use."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from syncssl.errors import WaitedTooLong
from syncssl.parallel import usable_cpus
from syncssl.train import distributed
from syncssl.train.distributed import Dist, announce, await_announcement

REPO = Path(__file__).resolve().parents[1]
# group norm: the weights then do not depend on how the global batch is split over processes (batch norm's
# statistics would); amp off: float32 everywhere, so one process and two agree to rounding
TRAIN = ["--preset", "tiny", "train.steps=4", "train.amp='off'", "model.norm='group'", "train.resume='none'",
         "train.eval_pairs=8", "train.ckpt_every=100", "data.prefetch=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                                          os.environ.get("PYTHONPATH")])))


def node(port: int, args: list[str]) -> subprocess.Popen:
    """One "node": a torchrun with one process, meeting the other at a c10d rendezvous on this machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=test{port}", "--max-restarts=0", "--monitor-interval=0.5",
           "-m", "syncssl.train", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment(),
                            cwd=REPO)


def kill_node(pid: int) -> None:
    """SIGKILL a torchrun and every process below it, as a node's failure would (torchrun starts its workers in
    sessions of their own: killing its process group leaves them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def final_weights(run_dir: Path) -> dict:
    from syncssl.train.checkpoint import load
    (ckpt,) = sorted((run_dir / "checkpoints").glob("step-*"))
    return load(ckpt)["model"]


def test_two_nodes_train_the_same_weights_as_one_process(tiny_dataset, tmp_path):
    args = [*TRAIN, f"data.dataset='{tiny_dataset}'"]
    port = free_port()
    nodes = [node(port, [*args, f"train.run_dir='{tmp_path / 'two'}'"]) for _ in range(2)]
    one = subprocess.run([sys.executable, "-m", "syncssl.train", *args, f"train.run_dir='{tmp_path / 'one'}'"],
                         capture_output=True, text=True, env=environment(), cwd=REPO, timeout=300)
    outputs = [p.communicate(timeout=300)[0] for p in nodes]
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    for p, out in zip(nodes, outputs):
        assert p.returncode == 0, out[-3000:]
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    assert '"world_size": 2' in (tmp_path / "two" / "summary.json").read_text()


def test_a_killed_node_ends_the_job_with_a_clear_message(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    args = [*TRAIN, f"data.dataset='{tiny_dataset}'", f"train.run_dir='{run_dir}'", "train.steps=100000",
            "train.log_every=1"]
    port = free_port()
    survivor = node(port, args)
    try:
        # the survivor hosts the rendezvous store (the first torchrun at the endpoint does): killing the host
        # would end the job from inside torchrun's agent instead
        deadline = time.monotonic() + 120
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and survivor.poll() is None, "the rendezvous did not start"
            time.sleep(0.2)
        victim = node(port, args)
        deadline = time.monotonic() + 240
        while not (run_dir / "metrics_train.csv").exists():  # rank 0 logs after the first step: training runs
            assert time.monotonic() < deadline and survivor.poll() is None and victim.poll() is None, \
                "training did not start"
            time.sleep(0.5)
        kill_node(victim.pid)  # the whole node: its torchrun and its worker
        out, _ = survivor.communicate(timeout=120)  # bounded: gloo sees the closed connection
    finally:
        for p in (survivor, locals().get("victim")):
            if p is not None:
                kill_node(p.pid)
    assert survivor.returncode != 0
    assert "another process of the job stopped or cannot be reached" in out, out[-4000:]
    assert "Traceback" not in out.split("another process of the job stopped")[0][-2000:]


@pytest.fixture
def fake_job(monkeypatch):
    """A two-process job as rank 1 sees it, with a real in-memory key-value store."""
    store = torch.distributed.HashStore()
    monkeypatch.setattr(torch.distributed.distributed_c10d, "_get_default_store", lambda: store)
    return Dist(rank=1, local_rank=0, world_size=2)


def test_waiting_for_rank_0_returns_its_word_and_gives_up_after_its_limit(fake_job):
    threading.Timer(0.3, announce, ("data-x", "ok", fake_job)).start()
    assert await_announcement("data-x", fake_job, "rank 0", 30, "train.data_wait_s", say=lambda m: None) == "ok"
    said = []
    with pytest.raises(WaitedTooLong, match=r"gave up .* waiting for rank 0 to prepare \(train.data_wait_s=1\)"):
        await_announcement("data-y", fake_job, "rank 0 to prepare", 1, "train.data_wait_s", say=said.append)
    assert said and "waiting for rank 0 to prepare" in said[0]


def test_a_failure_of_rank_0_reaches_the_waiting_ranks(fake_job, tmp_path):
    from syncssl.errors import DataError
    from syncssl.train import data
    from syncssl.train.config import load_config
    cfg = load_config("tiny", None, [f"data.dataset='{tmp_path / 'missing'}'"])
    announce(f"data-{data._rounds['data'] + 1}", "DataError: the disk is full", fake_job)  # rank 0's word on it
    with pytest.raises(DataError, match="the process preparing it failed .*the disk is full"):
        data.load_manifest(cfg.data, fake_job, wait_s=5)


@pytest.mark.parametrize("local_rank, count, index", [(0, 8, 0), (3, 8, 3), (3, 1, 0), (5, 2, 1)])
def test_each_process_picks_local_rank_modulo_the_visible_gpus(monkeypatch, local_rank, count, index):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setenv("WORLD_SIZE", "1")
    d = distributed.setup("cuda")
    assert d.device == torch.device("cuda", index) and chosen == [d.device]


@pytest.mark.parametrize("gpus", ["8", "h100:8", "h100:8(S:0-1)", "gpu:h100:8"])
def test_the_slurm_script_reads_the_gpu_count(tmp_path, gpus):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node-a; echo node-b\n")
    (bin_dir / "srun").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "srun.args"}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_GPUS_PER_NODE=gpus, SLURM_NNODES="2",
               SLURM_JOB_NODELIST="node-[a-b]", SLURM_JOB_ID="42")
    r = subprocess.run(["bash", str(REPO / "syncssl/train/slurm/pretrain.sbatch"), "train.steps=10"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "srun.args").read_text()
    assert "--nproc-per-node=8 " in args and "--rdzv-endpoint=node-a:29500" in args and "train.steps=10" in args


def test_usable_cpus_follow_the_affinity_and_the_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    assert usable_cpus(str(tmp_path)) == 6  # no cgroup files: the affinity mask
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(str(tmp_path)) == 6  # no quota
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert usable_cpus(str(tmp_path)) == 3  # 2.5 CPUs of quota: 3 threads
    (tmp_path / "cpu.max").write_text("1600000 100000\n")
    assert usable_cpus(str(tmp_path)) == 6  # a quota above the mask: the mask
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(str(tmp_path)) == 1
