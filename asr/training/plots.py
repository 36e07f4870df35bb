"""PNG figures: a run's learning curves, and a sweep's validation LER against each swept parameter."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from asr.files import atomic_write
from asr.training.state import EpochRecord

DPI = 100  # 8x3.5 inches -> 800x350 pixels: legible, a few tens of kB


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ticker():
    """matplotlib.ticker, imported with pyplot."""
    import matplotlib.ticker

    return matplotlib.ticker


def _save(figure, path: Path) -> None:
    """Render to PNG and write it atomically (a viewer never sees half a file)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    _pyplot().close(figure)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def learning_curves(records: Sequence[EpochRecord], path: Path) -> None:
    """Loss and LER per epoch, train and validation, side by side."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    # fixed margins: matplotlib's constrained layout costs more than the drawing itself
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.91, wspace=0.22)
    epochs = [r.epoch for r in records]
    for ax, metric, title in ((axes[0], "loss", "CTC loss"), (axes[1], "ler", "label error rate")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [math.nan if getattr(r, key) is None else getattr(r, key) for r in records]
            if not all(math.isnan(v) for v in values):
                ax.plot(epochs, values, marker=".", label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    # plain numbers as log tick labels (the default 10^k labels go through mathtext, slowly)
    axes[0].yaxis.set_major_formatter(_ticker().LogFormatter())
    axes[0].yaxis.set_minor_formatter(_ticker().LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    _save(figure, path)


def sweep_plot(rows: Sequence[Mapping], parameters: Sequence[str], path: Path) -> None:
    """One panel per swept parameter: each finished job's best validation LER against its value."""
    plt = _pyplot()
    panels = max(len(parameters), 1)
    figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.5), layout="constrained", squeeze=False)
    done = [r for r in rows if r.get("best_val_ler") is not None]
    for ax, name in zip(axes[0], parameters or ["job"], strict=True):
        values = [r["overrides"].get(name, "") if parameters else str(r["job"]) for r in done]
        numeric = all(_is_number(v) for v in values)
        xs = [float(v) for v in values] if numeric else values
        ax.scatter(xs, [r["best_val_ler"] for r in done])
        if numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("best validation LER")
        ax.grid(alpha=0.3)
    _save(figure, path)


def _is_number(text: str) -> bool:
    """True if `text` parses as a finite float."""
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False
