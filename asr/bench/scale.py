"""`asr-bench scale`: training cost as the corpus grows: per storage (features in memory, or read from the cache)
and share of the training split, seconds per epoch and peak resident memory, each point in a process of its own;
how close the epoch times lie to a line, and a plot."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.bench.common import WARMUP_EPOCHS, audio_seconds, epoch_figures, in_child
from asr.bench.train import train_ours
from asr.system import usable_cpus

if TYPE_CHECKING:
    from asr.training.options import RunOptions

log = logging.getLogger(__name__)


SCALE_FRACTIONS = (0.25, 0.5, 1.0, 2.0)  # the 25 %, 50 %, 100 % and 200 % (by repetition)
SCALE_STORAGES = ("memory", "disk")


def _scale_point(options: RunOptions, fraction: float, epochs: int, limit: int | None) -> dict:
    """One training of `fraction` of the corpus (in a child process of its own): epoch times, peak memory."""
    ours = train_ours(options, epochs, limit, fraction)
    train_only = [e - v for e, v in zip(ours["epoch_seconds"], ours["validation_seconds"], strict=True)]
    return {
        "fraction": fraction,
        "storage": ours["storage"],
        "train_utterances": len(ours["items"]),
        "train_audio_seconds": round(audio_seconds(ours["items"]), 2),
        "feature_bytes": ours["feature_bytes"],
        "steps_per_epoch": ours["steps_per_epoch"],
        "epoch_seconds": epoch_figures(ours["epoch_seconds"]),
        "train_seconds_without_validation": epoch_figures(train_only),
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
    }


def linearity(points: Sequence[dict]) -> dict:
    """Least-squares line through (fraction, median epoch seconds) and how far the points lie from it."""
    x = np.array([p["fraction"] for p in points])
    y = np.array([p["train_seconds_without_validation"]["median"] for p in points])
    slope, intercept = np.polyfit(x, y, 1)
    fitted = slope * x + intercept
    return {
        "seconds_per_corpus": round(float(slope), 3),
        "fixed_seconds": round(float(intercept), 3),
        "max_relative_deviation": round(float(np.max(np.abs(y - fitted) / y)), 4),
        "seconds_per_fraction": [round(float(v / f), 3) for v, f in zip(y, x, strict=True)],
    }


def bench_scale(
    overrides: Sequence[str],
    epochs: int,
    fractions: Sequence[float] = SCALE_FRACTIONS,
    storages: Sequence[str] = SCALE_STORAGES,
    limit: int | None = None,
) -> dict:
    """Training cost as the corpus grows: per storage (features in memory, or read from the cache) and
    fraction of the training split, seconds per epoch (after a warm-up epoch) and peak resident memory, each
    point in a spawned process of its own. `limit`: the first K training utterances are the 100 %."""
    from asr.config import compose

    started, began = time.perf_counter(), datetime.now().astimezone()
    runs = {}
    for storage in storages:
        options = compose([*overrides, f"data.storage={storage}"])
        log.info("data.storage=%s: %d points, each in a process of its own", storage, len(fractions))
        points = [in_child(_scale_point, options, f, epochs, limit) for f in fractions]
        runs[storage] = {"points": points, "linearity": linearity(points)}
    memory = {s: [p["peak_rss_mb"] for p in run["points"]] for s, run in runs.items()}
    return {
        "benchmark": "scale",
        "preset": options.name,
        "overrides": list(overrides),
        "date": began.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "cpus": usable_cpus(),
        "epochs": {"each": epochs, "warmup": WARMUP_EPOCHS},
        "fractions": list(fractions),
        "limit": limit,
        "runs": runs,
        # peak memory at the largest fraction over the smallest one, per storage
        "peak_rss_growth": {s: round(v[-1] / v[0], 3) for s, v in memory.items()},
        "peak_rss": "ru_maxrss of each point's own spawned process, TensorFlow included",
    }


def scale_plot(result: dict, path: Path) -> None:
    """Seconds per epoch and peak memory against the corpus fraction, one line per storage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    for storage, run in result["runs"].items():
        x = [p["fraction"] * 100 for p in run["points"]]
        time_ax.plot(x, [p["train_seconds_without_validation"]["median"] for p in run["points"]], "o-", label=storage)
        memory_ax.plot(x, [p["peak_rss_mb"] for p in run["points"]], "o-", label=storage)
    time_ax.set(xlabel="% of the training split", ylabel="seconds per epoch (median)", ylim=(0, None))
    memory_ax.set(xlabel="% of the training split", ylabel="peak resident memory (MB)", ylim=(0, None))
    for ax in (time_ax, memory_ax):
        ax.grid(alpha=0.3)
        ax.legend(title="data.storage")
    fig.suptitle(f"{result['preset']}: cost as the corpus grows ({result['date'][:10]})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scale_table(result: dict) -> str:
    """A few lines of `bench_scale`'s result for the console."""
    lines = [f"{'storage':8}{'corpus':>8}{'s/epoch':>10}{'peak MB':>10}{'features MB':>13}"]
    for storage, run in result["runs"].items():
        for p in run["points"]:
            lines.append(
                f"{storage:8}{p['fraction']:>8.0%}{p['train_seconds_without_validation']['median']:>10.2f}"
                f"{p['peak_rss_mb']:>10.0f}{p['feature_bytes'] / 1e6:>13.1f}"
            )
        fit = run["linearity"]
        lines.append(
            f"  {storage}: {fit['seconds_per_corpus']:.2f} s per 100 % + {fit['fixed_seconds']:.2f} s fixed, points "
            f"within {fit['max_relative_deviation']:.1%} of the line; peak memory x{result['peak_rss_growth'][storage]}"
        )
    return "\n".join(lines)
