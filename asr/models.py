"""The models shipped with the project (`models/<name>/` in the source checkout, e.g. `models/base`): found by
name wherever a command takes a model (`asr-transcribe base ...`, `trainer.init_from=base`), and written from a
finished run with float16 weights (scripts/ship_base.py).

Shipped models live in the repository, not in the Python package: a wheel would carry every model's megabytes to
every user; a checkout (`make setup` installs it editable) finds them beside the package. Light module: no
TensorFlow is imported until a model is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from asr.errors import UserError
from asr.files import replace_folder, staging_folder
from asr.system import SOURCE_ROOT

log = logging.getLogger(__name__)

# Where shipped models are: <repo>/models, the repository root being the package's parent in a source checkout.
MODELS_DIR = SOURCE_ROOT / "models"
# What ship_model copies from a run directory beside its bundle (the bundle is the run's model/ folder).
RUN_RECORDS = ("result.json", "provenance.json")
# A shipped bundle's size limit: each version adds its size to the repository's history (issue 36: at most 25 MB).
MAX_SHIPPED_MB = 25.0
# The suffix of a shipped model's streaming twin (models/base_streaming beside models/base).
STREAMING_SUFFIX = "_streaming"
MODEL_FIX = "pass a training run directory, its model/ folder, or the name of a shipped model"


class ModelNotFoundError(UserError):
    """A model argument is neither an existing path nor the name of a shipped model."""


class ShipError(UserError):
    """A run cannot be shipped as asked (not finished, the target exists, too large)."""


def shipped_models(models_dir: Path | None = None) -> list[str]:
    """The names of the shipped models (the folders of `models_dir`, default models/, sorted); none outside a
    source checkout."""
    models_dir = MODELS_DIR if models_dir is None else models_dir
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def resolve_model(name_or_path: str | os.PathLike, fix: str = MODEL_FIX, models_dir: Path | None = None) -> Path:
    """An existing path as given (`~` expanded); else a bare name (no folder part) of a shipped model ->
    models/<name>; else ModelNotFoundError, one line naming the argument, the problem and `fix` (for a bare name
    also the shipped names)."""
    given = str(name_or_path)
    path = Path(given).expanduser()
    if path.exists():
        return path
    if given in ("", ".", "..") or "/" in given or os.sep in given:  # a path, not a name
        raise ModelNotFoundError(f"{given}: no such file or directory; {fix}")
    models_dir = MODELS_DIR if models_dir is None else models_dir
    names = shipped_models(models_dir)
    if given in names:
        return models_dir / given
    shipped = f"shipped models: {', '.join(names)}" if names else f"no shipped models in {models_dir}"
    raise ModelNotFoundError(f"{given}: no such file or directory, nor a shipped model ({shipped}); {fix}")


def streaming_twin(name: str, models_dir: Path | None = None) -> str | None:
    """The shipped name `<name>_streaming` (the unidirectional twin `make base-streaming` writes beside `base`)
    where `name` is a bare name that resolves to a shipped model and that twin is shipped too; else None."""
    models_dir = MODELS_DIR if models_dir is None else models_dir
    twin = f"{name}{STREAMING_SUFFIX}"
    names = shipped_models(models_dir)
    if name not in names or twin not in names:
        return None
    return twin if resolve_model(name, models_dir=models_dir) == models_dir / name else None  # not a local folder


def write_float16_weights(source: Path, target: Path) -> dict:
    """Copy a Keras weights file (.weights.h5) with every float32 array stored as float16; returns the largest
    absolute change of a weight and the two sizes in bytes. Keras's load_weights assigns the float16 arrays to
    the model's float32 variables, so a loaded model computes in float32 (tests/test_models.py checks it)."""
    import h5py
    import numpy as np

    largest = 0.0
    with h5py.File(source, "r") as original, h5py.File(target, "w") as copy:
        copy.attrs.update(original.attrs)

        def visit(name: str, item: h5py.Group | h5py.Dataset) -> None:
            nonlocal largest
            if isinstance(item, h5py.Dataset):
                values = item[()]
                if item.dtype == np.float32:
                    halved = values.astype(np.float16)
                    if not np.isfinite(halved[np.isfinite(values)]).all():
                        raise ShipError(f"{source}: {name} holds weights beyond float16's range; ship it as float32")
                    largest = max(largest, float(np.abs(halved.astype(np.float32) - values).max(initial=0.0)))
                    values = halved
                copy.create_dataset(name, data=values).attrs.update(item.attrs)
            else:
                copy.require_group(name).attrs.update(item.attrs)

        original.visititems(visit)
    return {"max_abs_change": largest, "bytes": source.stat().st_size, "float16_bytes": target.stat().st_size}


def folder_bytes(folder: Path) -> int:
    """The size of the files under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def ship_model(run: Path, target: Path, force: bool = False, max_mb: float = MAX_SHIPPED_MB) -> dict:
    """Write a finished run's bundle into `target` as a shipped model: its files with float16 weights (bundle.json
    records `weights_dtype`), and the run's result.json and provenance.json (with a `shipped` record: from where,
    when, the git state, the weights' SHA-256 before and after). Staged beside `target` and renamed into place;
    an existing `target` is replaced only with `force` (its files the ship does not write, such as
    MODEL_CARD.md, are kept). ShipError for an unfinished run, an existing target or a model above max_mb.
    Returns the `shipped` record."""
    from asr.inference.bundle import BUNDLE_FILE, WEIGHTS_FILE, find_bundle
    from asr.training.provenance import git_state, now
    from asr.training.transfer import bundle_sha256

    missing = [name for name in RUN_RECORDS if not (run / name).is_file()]
    if not run.is_dir() or missing:
        raise ShipError(
            f"{run}: not a finished training run (no {', '.join(missing) or 'such directory'}); finish the training "
            f"first (the same asr-train command resumes it) and pass its run directory"
        )
    bundle = find_bundle(run)
    if target.exists() and not force:
        raise ShipError(f"{target}: already exists; pass --force to replace it (its MODEL_CARD.md is kept)")
    staging = staging_folder(target)
    try:
        shutil.copytree(bundle, staging, ignore=shutil.ignore_patterns(WEIGHTS_FILE, ".*"))
        change = write_float16_weights(bundle / WEIGHTS_FILE, staging / WEIGHTS_FILE)
        spec = json.loads((staging / BUNDLE_FILE).read_text(encoding="utf-8"))
        spec["weights_dtype"] = "float16"  # loaded into float32 variables
        (staging / BUNDLE_FILE).write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        shutil.copy2(run / "result.json", staging / "result.json")
        shipped = {
            "run": str(run.resolve()),
            "at": now(),
            "git": git_state(SOURCE_ROOT),
            "weights": "float16",
            "run_bundle_sha256": bundle_sha256(bundle),
            "bundle_sha256": bundle_sha256(staging),
            **change,
        }
        origin = json.loads((run / "provenance.json").read_text(encoding="utf-8"))
        (staging / "provenance.json").write_text(json.dumps({**origin, "shipped": shipped}, indent=2) + "\n")
        size_mb = folder_bytes(staging) / 1e6
        if size_mb > max_mb:
            raise ShipError(
                f"{target}: the shipped model would be {size_mb:.1f} MB, above {max_mb:g} MB (each version stays in "
                f"the repository's history); make the model or its language model smaller, or raise --max-mb"
            )
        if target.exists():
            for kept in target.iterdir():  # what the ship does not write (MODEL_CARD.md) stays
                if not (staging / kept.name).exists():
                    (shutil.copytree if kept.is_dir() else shutil.copy2)(kept, staging / kept.name)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("shipped %s as %s (%.1f MB, float16 weights)", bundle, target, folder_bytes(target) / 1e6)
    return {**shipped, "megabytes": round(folder_bytes(target) / 1e6, 3)}
