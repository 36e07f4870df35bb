import os
import sys
from pathlib import Path

import pytest

from asr import system


def test_quiet_tensorflow_hides_the_cpp_start_up_lines_unless_the_user_chose_a_level(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    system.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    system.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_usable_cpus_follows_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert system.usable_cpus() == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert system.usable_cpus() == 7


WORKERS_SCRIPT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from asr.system import die_with_parent


def worker_pid(_):
    time.sleep(0.1)
    return os.getpid()


if __name__ == "__main__":
    pool = ProcessPoolExecutor(2, get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),))
    print(" ".join(str(p) for p in set(pool.map(worker_pid, range(8)))), flush=True)
    os.kill(os.getpid(), 9)  # killed with its workers idle: nothing closes the pool
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_worker_processes_end_when_the_command_that_started_them_is_killed(tmp_path):
    import subprocess
    import time

    script = tmp_path / "workers.py"
    script.write_text(WORKERS_SCRIPT)
    out = tmp_path / "pids.txt"
    with out.open("w") as stdout:  # a file, not a pipe: workers left alive would hold a pipe open
        done = subprocess.run([sys.executable, str(script)], stdout=stdout, timeout=120)
    assert done.returncode == -9
    pids = [int(p) for p in out.read_text().split()]
    assert pids

    def alive(pid: int) -> bool:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        return "\nState:\tZ" not in status  # a zombie has ended

    deadline = time.monotonic() + 20
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)]
