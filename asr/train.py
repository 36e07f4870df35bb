"""`asr-train [overrides]`: load -> validate -> features -> datasets -> model -> fit -> evaluate -> save -> report.

Only this module reads the Hydra config; it turns it into typed values once and passes those down.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import hydra
import keras
import numpy as np
import tensorflow as tf
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tensorflow.python.framework import config as tf_config
from tensorflow.python.framework import ops as tf_ops

from asr import checkpoint, provenance
from asr.bundle import save_bundle
from asr.config import SOURCE_ROOT, Config, OptimizerConfig, TrainerConfig, register
from asr.features import FeatureOptions
from asr.files import atomic_write_text
from asr.model import CTCModel
from asr.pipeline import Example, epoch_plans, make_dataset
from asr.plots import learning_curves
from asr.prepare import prepare_data, write_report
from asr.sweep import STATUS_FILE, threads_per_job
from asr.text import Vocabulary, error_rates
from asr.transcribe import inference_function, transcribe_features

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
RESUME = ("auto", "never")
METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "learning_curves.png"
TB_DIR = "tb"
TB_SAMPLES = 3  # validation utterances decoded into TensorBoard each epoch
# What a run writes into its directory; an earlier run's copies are moved aside when starting over.
RUN_FILES = [
    METRICS_FILE,
    "result.json",
    "model",
    checkpoint.CHECKPOINT_DIR,
    TB_DIR,
    CURVES_FILE,
    provenance.PROVENANCE_FILE,
    "prepare_report.json",
    STATUS_FILE,
]


def set_determinism(seed: int, deterministic: bool, threads: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make TF ops deterministic; limit TF threads if asked."""
    if threads > 0:
        for name in ("intra_op", "inter_op"):
            getter = getattr(tf.config.threading, f"get_{name}_parallelism_threads")
            if getter() == threads:
                continue
            try:
                getattr(tf.config.threading, f"set_{name}_parallelism_threads")(threads)
            except RuntimeError:  # TensorFlow already running in this process (a reused multirun worker)
                log.warning(
                    "TensorFlow %s threads stay at %d (already initialized); wanted %d", name, getter(), threads
                )
        log.info(
            "TensorFlow threads: %d intra-op, %d inter-op",
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )
    random.seed(seed)
    keras.utils.set_random_seed(seed)  # also seeds NumPy and TensorFlow
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    elif tf_config.is_op_determinism_enabled():  # an earlier job in this process (a multirun) turned it on
        tf_config.disable_op_determinism()  # not exported as tf.config.*, only this module has it


def learning_rate(cfg: OptimizerConfig, total_steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Constant (also the start of reduce-on-plateau), or linear warm-up from 0 then cosine decay to 0 over
    `total_steps` optimizer steps."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    if cfg.lr <= 0:
        raise ValueError(f"optimizer.lr must be positive, got {cfg.lr}")
    if cfg.schedule in ("constant", "plateau"):
        if cfg.schedule == "plateau" and not (0.0 < cfg.plateau_factor < 1.0 and cfg.plateau_patience >= 1):
            raise ValueError(
                f"optimizer.plateau_factor must be in (0, 1) and plateau_patience >= 1, got "
                f"{cfg.plateau_factor}, {cfg.plateau_patience}"
            )
        return cfg.lr
    warmup = int(cfg.warmup_epochs * total_steps)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=total_steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(total_steps - warmup, 1), warmup_target=cfg.lr, warmup_steps=warmup
    )


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """The configured Keras optimizer and learning-rate schedule."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {cfg.name!r}")
    lr = learning_rate(cfg, steps_per_epoch * epochs)
    clip = {"clipnorm": cfg.clipnorm} if cfg.clipnorm > 0 else {}
    if cfg.name == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum, **clip)
    if cfg.name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay, **clip)
    return keras.optimizers.Adam(lr, **clip)


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


def best_epoch(records: list[dict]) -> tuple[int, float]:
    """(epoch, LER) of the best epoch: lowest validation LER (training LER without validation); among equal
    LERs, common on small validation sets, the lowest loss."""
    key = [(r.get("val_ler", r["ler"]), r.get("val_loss", r["loss"]), r["epoch"]) for r in records]
    ler, _, epoch = min(key)
    return epoch, ler


def epochs_without_improvement(records: list[dict]) -> int:
    """Epochs since the validation LER last went down (the patience count of early stopping)."""
    lers = [r.get("val_ler", r["ler"]) for r in records]
    return len(lers) - 1 - lers.index(min(lers))


class RunMonitor(keras.callbacks.Callback):
    """Everything done at the end of an epoch, in order: record the metrics, stop on a NaN loss, keep the
    best weights, adjust the learning rate on a plateau, decide early stopping, write metrics.jsonl,
    TensorBoard and learning_curves.png, and save the checkpoint that resume continues from."""

    def __init__(
        self,
        run_dir: Path,
        trainer: TrainerConfig,
        optimizer: OptimizerConfig,
        state: dict,
        padding_shares: list[float],
        samples: Callable[[], list[dict]] | None,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.trainer = trainer
        self.plateau = optimizer if optimizer.schedule == "plateau" else None
        self.state = state  # epoch, records, stopped, plateau_wait, train_seconds, config_sha256
        self.padding_shares = padding_shares
        self.samples = samples
        self.best_weights: list[np.ndarray] | None = None
        self.writers: dict[str, tf.summary.SummaryWriter] = {}
        self._started = 0.0
        self._fit_started = 0.0
        self._seconds_before = 0.0
        self.train_ended = 0.0  # perf_counter when the last epoch's callbacks were done

    @property
    def records(self) -> list[dict]:
        return self.state["records"]

    def on_train_begin(self, logs=None) -> None:
        self._fit_started = time.perf_counter()
        self._seconds_before = self.state["train_seconds"]  # a resumed run's earlier training time

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._started = time.perf_counter()
        log.info("epoch %d: padding share %.3f (padded frames / real frames)", epoch + 1, self.padding_shares[epoch])

    def on_train_end(self, logs=None) -> None:
        self.train_ended = time.perf_counter()
        for writer in self.writers.values():
            writer.close()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        record = self._record(epoch, logs or {})
        if not math.isfinite(record["loss"]):
            raise TrainingDiverged(
                f"epoch {epoch + 1}: the training loss is {record['loss']}; lower optimizer.lr or set "
                f"optimizer.clipnorm (the last good checkpoint is in {self.run_dir / checkpoint.CHECKPOINT_DIR})"
            )
        self.records.append(record)
        if self.trainer.keep_best and best_epoch(self.records)[0] == epoch + 1:
            self.best_weights = self.model.get_weights()
        self._plateau(record)
        self._early_stop(record)
        self.state["epoch"] = epoch + 1
        self.state["train_seconds"] = self._seconds_before + time.perf_counter() - self._fit_started
        with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self._tensorboard(record)
        learning_curves(self.records, self.run_dir / CURVES_FILE)
        checkpoint.save(self.run_dir, self.model, self.state, self.best_weights)

    def _record(self, epoch: int, logs: dict) -> dict:
        """The metrics.jsonl line of an epoch."""
        record = {"epoch": epoch + 1}
        for key in ("loss", "ler", "wer", "val_loss", "val_ler", "val_wer"):
            if key in logs:
                record[key] = float(logs[key])
        record["epoch_seconds"] = round(time.perf_counter() - self._started, 4)
        record["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record["padding_share"] = round(self.padding_shares[epoch], 4)
        return record

    def _plateau(self, record: dict) -> None:
        """Reduce-on-plateau: multiply the learning rate by the factor after `plateau_patience` epochs
        without a lower validation LER (not below min_lr)."""
        if self.plateau is None:
            return
        if epochs_without_improvement(self.records) == 0:
            self.state["plateau_wait"] = 0
            return
        self.state["plateau_wait"] += 1
        if self.state["plateau_wait"] >= self.plateau.plateau_patience:
            lr = max(record["lr"] * self.plateau.plateau_factor, self.plateau.min_lr)
            if lr < record["lr"]:
                self.model.optimizer.learning_rate = lr
                log.info("epoch %d: validation LER flat, learning rate %.3g -> %.3g", record["epoch"], record["lr"], lr)
            self.state["plateau_wait"] = 0

    def _early_stop(self, record: dict) -> None:
        """Stop at a target validation LER, or after `patience` epochs without improvement."""
        ler = record.get("val_ler", record["ler"])
        if self.trainer.stop_at_val_ler >= 0.0 and ler <= self.trainer.stop_at_val_ler:
            log.info(
                "epoch %d: validation LER %.4f <= %.4f, stopping", record["epoch"], ler, self.trainer.stop_at_val_ler
            )
            self.state["stopped"] = True
        waited = epochs_without_improvement(self.records)
        if self.trainer.patience > 0 and waited >= self.trainer.patience:
            log.info("epoch %d: no lower validation LER for %d epochs, stopping", record["epoch"], waited)
            self.state["stopped"] = True
        self.model.stop_training = self.state["stopped"]

    def _tensorboard(self, record: dict) -> None:
        """Scalars per split (tb/train, tb/validation) and a few decoded validation samples as text."""
        if not self.writers:
            self.writers = {
                s: tf.summary.create_file_writer(str(self.run_dir / TB_DIR / s)) for s in ("train", "validation")
            }
        step = record["epoch"]
        with self.writers["train"].as_default(step=step):
            for key in ("loss", "ler", "wer", "lr", "padding_share"):
                tf.summary.scalar(key, record[key])
        with self.writers["validation"].as_default(step=step):
            for key in ("loss", "ler", "wer"):
                if f"val_{key}" in record:
                    tf.summary.scalar(key, record[f"val_{key}"])
            if self.samples is not None:
                lines = [
                    f"{'==' if s['ref'] == s['hyp'] else '!='} ref: `{s['ref']}`  hyp: `{s['hyp']}`"
                    for s in self.samples()
                ]
                tf.summary.text("samples", "\n\n".join(lines))
        for writer in self.writers.values():
            writer.flush()


def evaluate(
    model: CTCModel,
    vocab: Vocabulary,
    examples: list[Example],
    batch_size: int,
    samples: int,
    infer: Callable | None = None,
) -> dict:
    """Greedy transcripts of a split, scored: ler, wer, utt_acc, n, and the first `samples` results."""
    hyps = transcribe_features(model, vocab, [e.features for e in examples], batch_size, infer)
    refs = [e.text for e in examples]
    return {
        **error_rates(refs, hyps),
        "samples": [
            {"audio": e.key, "ref": r, "hyp": h} for e, r, h in list(zip(examples, refs, hyps, strict=True))[:samples]
        ],
    }


def config_sha256(cfg: Config) -> str:
    """Hash of the settings that decide a run's numbers (not: resume, epochs shown, threads, logging)."""
    settings = asdict(cfg)
    for key in ("resume", "verbose", "samples", "threads"):
        settings["trainer"].pop(key)
    for key in ("workers", "cache", "cache_dir"):
        settings["data"].pop(key)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()


def start_or_resume(cfg: Config, run_dir: Path) -> checkpoint.Checkpoint | None:
    """The checkpoint to continue from (trainer.resume=auto and one exists), or None after moving any
    earlier run's files in run_dir aside (never deleting them)."""
    if cfg.trainer.resume not in RESUME:
        raise ValueError(f"trainer.resume must be one of {RESUME}, got {cfg.trainer.resume!r}")
    if cfg.trainer.epochs < 1 or cfg.trainer.batch_size < 1:
        raise ValueError(
            f"trainer.epochs and trainer.batch_size must be >= 1, got {cfg.trainer.epochs}, {cfg.trainer.batch_size}"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    found = checkpoint.latest(run_dir) if cfg.trainer.resume == "auto" else None
    if found is None:
        checkpoint.move_aside(run_dir, RUN_FILES)
        return None
    if found.state["config_sha256"] != config_sha256(cfg):
        raise checkpoint.CheckpointError(
            f"{run_dir} holds a run with other settings (checkpoint {found.path.name}); resume only with the "
            f"same config, or pass trainer.resume=never to move that run aside and start over"
        )
    log.info("resuming from %s (epoch %d of %d done)", found.path, found.state["epoch"], cfg.trainer.epochs)
    return found


def _custom_gradients() -> dict:
    """TensorFlow's global gradient registry (private: see forget_new_custom_gradients)."""
    return getattr(getattr(tf_ops, "_gradient_registry", None), "_registry", {})


def forget_new_custom_gradients(known: set[str]) -> None:
    """Drop the gradient functions that tf.custom_gradient registered since `known` was taken.

    Every trace of tf.nn.ctc_loss registers a "CustomGradient-<n>" entry in a process-global registry, and
    that entry holds the traced step's whole graph forever (tensorflow/tensorflow#27492, #97697), so a
    multirun of N jobs in one process grew by ~50 MB per job even after keras.backend.clear_session().
    Once a job's model is gone, nothing can use its entries.
    """
    registry = _custom_gradients()
    for name in [n for n in registry if n.startswith("CustomGradient-") and n not in known]:
        del registry[name]


def train(cfg: Config, run_dir: Path, overrides: Sequence[str] = ()) -> float:
    """Train as configured, writing metrics.jsonl, result.json, model/, checkpoints/, tb/, provenance.json and
    learning_curves.png into run_dir, resuming from its last checkpoint if it has one; returns the best
    validation LER. Leaves nothing behind in the process (a multirun runs many jobs in one)."""
    known = set(_custom_gradients())
    try:
        return _train(cfg, run_dir, overrides)
    finally:
        forget_new_custom_gradients(known)
        keras.backend.clear_session()
        gc.collect()


def _train(cfg: Config, run_dir: Path, overrides: Sequence[str]) -> float:
    """The body of `train`."""
    keras.backend.clear_session()  # start each job from nothing (fresh layer names, no old graphs)
    set_determinism(cfg.seed, cfg.trainer.deterministic, cfg.trainer.threads)
    options = FeatureOptions(**asdict(cfg.features))
    vocab = Vocabulary(cfg.data.characters)
    model = CTCModel(num_features=options.num_features, characters=vocab.characters, seed=cfg.seed, **asdict(cfg.model))
    build_optimizer(cfg.optimizer, 1, 1)  # fail on a bad optimizer setting before the data is read
    resumed = start_or_resume(cfg, run_dir)

    prepared = prepare_data(cfg.data, options, vocab, model.stride)
    write_report(prepared.report, run_dir)
    origin = provenance.collect(overrides, SOURCE_ROOT, prepared.report["dataset_sha256"])
    provenance.start(run_dir, origin)
    examples = prepared.examples

    batch_size, epochs = cfg.trainer.batch_size, cfg.trainer.epochs
    state = {
        "epoch": 0,
        "records": [],
        "stopped": False,
        "plateau_wait": 0,
        "train_seconds": 0.0,
        "config_sha256": config_sha256(cfg),
    }
    plans = epoch_plans(examples["train"], batch_size, cfg.seed, cfg.trainer.bucketing, epochs)
    steps_per_epoch = len(plans[0].batches)  # the same every epoch
    model.compile(optimizer=build_optimizer(cfg.optimizer, steps_per_epoch, epochs))
    infer = inference_function(model)  # one traced graph for the TensorBoard samples and the test split
    monitor_samples = None
    if examples["valid"]:
        shown = examples["valid"][:TB_SAMPLES]
        monitor_samples = lambda: evaluate(model, vocab, shown, batch_size, TB_SAMPLES, infer)["samples"]  # noqa: E731
    shares = [plan.padding_share for plan in plans]
    monitor = RunMonitor(run_dir, cfg.trainer, cfg.optimizer, state, shares, monitor_samples)
    if resumed is not None:
        checkpoint.restore(model, resumed)
        state.update(resumed.state)
        monitor.best_weights = resumed.best_weights
    # metrics.jsonl holds exactly the epochs of the checkpoint (a line written after it is dropped)
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in state["records"]))

    if state["epoch"] < epochs and not state["stopped"]:
        valid_data = None
        if examples["valid"]:
            valid_data = make_dataset(examples["valid"], epoch_plans(examples["valid"], batch_size, None))
        seconds_before, started = state["train_seconds"], time.perf_counter()
        model.fit(
            make_dataset(examples["train"], plans[state["epoch"] :]),
            validation_data=valid_data,
            initial_epoch=state["epoch"],
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=[monitor],
            shuffle=False,  # the dataset reshuffles itself from the run's seed
            verbose=cfg.trainer.verbose,
        )
        finished = time.perf_counter()
        if finished - monitor.train_ended > 1.0:  # seen with a Python-generator dataset; kept as a guard
            log.warning("fit returned %.1f s after training ended", finished - monitor.train_ended)
        state["train_seconds"] = seconds_before + finished - started
    if cfg.trainer.keep_best and monitor.best_weights is not None:
        model.set_weights(monitor.best_weights)
        log.info("restored the weights of epoch %d (best validation LER)", best_epoch(state["records"])[0])

    test = (
        evaluate(model, vocab, examples["test"], batch_size, cfg.trainer.samples, infer) if examples["test"] else None
    )
    save_bundle(run_dir / "model", model, options, vocab, prepared.cmvn)
    best, best_ler = best_epoch(state["records"])
    result = {
        "best_epoch": best,
        "best_val_ler": best_ler,
        "epochs": len(state["records"]),
        "train_seconds": round(state["train_seconds"], 3),
        "resumed_from_epoch": resumed.state["epoch"] if resumed else None,
        "test": {k: v for k, v in test.items() if k != "samples"} if test else None,
        "samples": test["samples"] if test else [],
        "rejected": prepared.report["rejected"],
    }
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2) + "\n")
    provenance.finish(run_dir, origin)
    report(result, run_dir)
    if not math.isfinite(best_ler):
        raise TrainingDiverged(f"the best validation LER is {best_ler}")
    return float(best_ler)


def report(result: dict, run_dir: Path) -> None:
    """A few human lines on the console (CLI output)."""
    print(
        f"trained {result['epochs']} epochs in {result['train_seconds']:.1f} s; "
        f"best validation LER {result['best_val_ler']:.4f} at epoch {result['best_epoch']}"
    )
    if result["test"]:
        t = result["test"]
        print(f"test: LER {t['ler']:.4f}  WER {t['wer']:.4f}  utterance accuracy {t['utt_acc']:.4f}  (n={t['n']})")
        for s in result["samples"][:5]:
            print(f"  {'==' if s['ref'] == s['hyp'] else '!='} ref: {s['ref']!r}  hyp: {s['hyp']!r}")
    print(f"run directory: {run_dir}")


@hydra.main(version_base="1.3", config_path="pkg://asr.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    """Hydra task: typed config in, best validation LER out (what a sweeper minimizes)."""
    config: Config = OmegaConf.to_object(cfg)
    hydra_cfg = HydraConfig.get()
    launcher = hydra_cfg.launcher
    target = str(launcher.get("_target_", ""))
    config.trainer.threads = threads_per_job(config.trainer.threads, target, int(launcher.get("n_jobs", 1) or 1))
    if "joblib" in target and config.data.workers == 0:
        config.data.workers = 1  # the jobs already run in parallel processes (which cannot start their own)
    return train(config, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))


def main() -> None:
    """Console entry point `asr-train`."""
    register()
    _hydra_main()


if __name__ == "__main__":
    main()
