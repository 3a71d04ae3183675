"""Worker processes end with their parent: Ctrl-C, SIGTERM (a scheduler pre-empting the job) and SIGKILL (the OOM
killer) leave no worker behind, and Ctrl-C and SIGTERM exit at once with their usual codes."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from syncssl.parallel import _gone

SCRIPT = textwrap.dedent("""
    import signal, sys, time
    from syncssl.parallel import Workers
    if __name__ == "__main__":
        # Ctrl-C as in a terminal's foreground: a test suite run in the background (nohup, &) inherits SIGINT ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with Workers(2) as pool:
            print(*pool.pool._processes, flush=True)  # the workers' pids
            for _ in pool.map(time.sleep, [60, 60]):  # jobs that outlive the test
                pass
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc as on Linux")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, -signal.SIGINT), (signal.SIGTERM, 128 + signal.SIGTERM),
                                       (signal.SIGKILL, -signal.SIGKILL)])
def test_no_worker_outlives_its_parent(tmp_path, sig, code):
    script = tmp_path / "work.py"
    script.write_text(SCRIPT)
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    workers = [int(pid) for pid in p.stdout.readline().split()]
    assert len(workers) == 2 and all(not _gone(w) for w in workers)
    time.sleep(0.5)  # the jobs are running
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err  # Ctrl-C: Python's own exit by SIGINT (the CLI's is click's 1)
    deadline = time.time() + 10
    while any(not _gone(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(not _gone(w) for w in workers), "a worker outlived its parent"
    if sig == signal.SIGTERM:
        assert "stopped by SIGTERM" in err and "Traceback" not in err
