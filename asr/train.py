"""`asr-train [overrides]`: load -> validate -> features -> datasets -> model -> fit -> evaluate -> save -> report.

Only this module reads the Hydra config; it turns it into typed values once and passes those down.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict
from pathlib import Path

import hydra
import keras
import numpy as np
import tensorflow as tf
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from asr.bundle import save_bundle
from asr.config import Config, OptimizerConfig, register
from asr.features import FeatureOptions
from asr.model import CTCModel
from asr.pipeline import Example, batches_per_epoch, make_dataset
from asr.prepare import prepare_data, write_report
from asr.text import Vocabulary, error_rates
from asr.transcribe import transcribe_features

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def set_determinism(seed: int, deterministic: bool, threads: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make TF ops deterministic; limit TF threads if asked."""
    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    random.seed(seed)
    keras.utils.set_random_seed(seed)  # also seeds NumPy and TensorFlow
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def learning_rate(cfg: OptimizerConfig, total_steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Constant, or linear warm-up from 0 then cosine decay to 0 over `total_steps` optimizer steps."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    if cfg.lr <= 0:
        raise ValueError(f"optimizer.lr must be positive, got {cfg.lr}")
    if cfg.schedule == "constant":
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


class EpochLog(keras.callbacks.Callback):
    """Appends one JSON line per epoch to metrics.jsonl; optionally keeps the best weights and stops early."""

    def __init__(self, path: Path, stop_at_val_ler: float, keep_best: bool) -> None:
        super().__init__()
        self.path = path
        self.stop_at_val_ler = stop_at_val_ler
        self.keep_best = keep_best
        self.best_ler = float("inf")
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.records: list[dict] = []
        self._started = 0.0
        self.train_ended = 0.0  # perf_counter when the last epoch's callbacks were done

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._started = time.perf_counter()

    def on_train_end(self, logs=None) -> None:
        self.train_ended = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        record = {"epoch": epoch + 1}
        for key in ("loss", "ler", "wer", "val_loss", "val_ler", "val_wer"):
            if key in logs:
                record[key] = float(logs[key])
        record["epoch_seconds"] = round(time.perf_counter() - self._started, 4)
        record["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.records.append(record)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        ler = record.get("val_ler", record["ler"])
        if ler < self.best_ler:
            self.best_ler, self.best_epoch = ler, epoch + 1
            if self.keep_best:
                self.best_weights = self.model.get_weights()
        if self.stop_at_val_ler >= 0.0 and ler <= self.stop_at_val_ler:
            log.info("epoch %d: validation LER %.4f <= %.4f, stopping", epoch + 1, ler, self.stop_at_val_ler)
            self.model.stop_training = True


def evaluate(model: CTCModel, vocab: Vocabulary, examples: list[Example], batch_size: int, samples: int) -> dict:
    """Greedy transcripts of a split, scored: ler, wer, utt_acc, n, and the first `samples` results."""
    hyps = transcribe_features(model, vocab, [e.features for e in examples], batch_size)
    refs = [e.text for e in examples]
    return {
        **error_rates(refs, hyps),
        "samples": [
            {"audio": e.key, "ref": r, "hyp": h} for e, r, h in list(zip(examples, refs, hyps, strict=True))[:samples]
        ],
    }


def train(cfg: Config, run_dir: Path) -> float:
    """Train as configured, writing metrics.jsonl, result.json and model/ into run_dir; returns best val LER."""
    set_determinism(cfg.seed, cfg.trainer.deterministic, cfg.trainer.threads)
    options = FeatureOptions(**asdict(cfg.features))
    vocab = Vocabulary(cfg.data.characters)
    model = CTCModel(num_features=options.num_features, characters=vocab.characters, seed=cfg.seed, **asdict(cfg.model))
    build_optimizer(cfg.optimizer, 1, 1)  # fail on a bad optimizer setting before the data is read

    prepared = prepare_data(cfg.data, options, vocab, model.stride)
    write_report(prepared.report, run_dir)
    examples, rejected = prepared.examples, prepared.report["rejected"]

    batch_size = cfg.trainer.batch_size
    # exactly `epochs` epochs of batches: nothing is left in flight when fit ends
    train_data = make_dataset(examples["train"], batch_size, cfg.seed, cfg.trainer.bucketing, cfg.trainer.epochs)
    valid_data = make_dataset(examples["valid"], batch_size, None) if examples["valid"] else None
    steps_per_epoch = batches_per_epoch(examples["train"], batch_size, cfg.trainer.bucketing)
    model.compile(optimizer=build_optimizer(cfg.optimizer, steps_per_epoch, cfg.trainer.epochs))
    run_dir.mkdir(parents=True, exist_ok=True)
    epoch_log = EpochLog(run_dir / "metrics.jsonl", cfg.trainer.stop_at_val_ler, cfg.trainer.keep_best)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)

    started = time.perf_counter()
    model.fit(
        train_data,
        validation_data=valid_data,
        epochs=cfg.trainer.epochs,
        steps_per_epoch=steps_per_epoch,  # the training dataset is endless, reshuffled every epoch
        callbacks=[epoch_log],
        shuffle=False,  # the dataset reshuffles itself from the run's seed
        verbose=cfg.trainer.verbose,
    )
    finished = time.perf_counter()
    train_seconds = finished - started
    if finished - epoch_log.train_ended > 1.0:  # seen a few times with FSDD: Keras/tf.data teardown, cause unknown
        log.warning("fit returned %.1f s after training ended", finished - epoch_log.train_ended)
    if cfg.trainer.keep_best and epoch_log.best_weights is not None:
        model.set_weights(epoch_log.best_weights)
        log.info("restored the weights of epoch %d (best validation LER)", epoch_log.best_epoch)

    test = evaluate(model, vocab, examples["test"], batch_size, cfg.trainer.samples) if examples["test"] else None
    save_bundle(run_dir / "model", model, options, vocab, prepared.cmvn)
    result = {
        "best_epoch": epoch_log.best_epoch,
        "best_val_ler": epoch_log.best_ler,
        "epochs": len(epoch_log.records),
        "train_seconds": round(train_seconds, 3),
        "test": {k: v for k, v in test.items() if k != "samples"} if test else None,
        "samples": test["samples"] if test else [],
        "rejected": rejected,
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    report(result, run_dir)
    return float(epoch_log.best_ler)


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
    return train(config, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    """Console entry point `asr-train`."""
    register()
    _hydra_main()


if __name__ == "__main__":
    main()
