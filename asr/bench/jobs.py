"""`asr-bench jobs`: N short training jobs one after another in one process, as a Hydra multirun with the basic
launcher runs them; the resident memory after each job, against the first job's as the baseline, shows whether
memory grows per job."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def resident_mb() -> float:
    """This process's resident memory now (Linux /proc; peak RSS elsewhere), in MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_jobs(jobs: int, overrides: Sequence[str], work_dir: Path) -> dict:
    """Resident memory after each of `jobs` training runs in this process (config: the defaults + overrides)."""
    from asr.config import compose
    from asr.training.loop import train

    options = compose(overrides)
    after = []
    for job in range(jobs):
        started = time.perf_counter()
        train(options, work_dir / str(job), [*overrides])
        after.append(
            {"job": job, "rss_mb": round(resident_mb(), 1), "seconds": round(time.perf_counter() - started, 2)}
        )
        log.info("job %d: %.1f MB resident", job, after[-1]["rss_mb"])
    growth = (after[-1]["rss_mb"] - after[0]["rss_mb"]) / max(jobs - 1, 1)
    return {
        "benchmark": "jobs",
        "overrides": list(overrides),
        "jobs": after,
        "baseline_rss_mb_after_first_job": after[0]["rss_mb"],
        "growth_mb_per_job_after_the_first": round(growth, 2),
    }
