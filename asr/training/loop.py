"""One training run, top to bottom: prepare data -> model -> fit -> evaluate -> save -> report.

`train(options, run_dir)` takes typed options (asr.config.to_options / asr.config.compose make them from a
Hydra config) and writes everything into run_dir; `asr-train` is a thin wrapper around it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np

from asr import compat
from asr.data.batching import epoch_plans
from asr.data.preparation import REPORT_FILE, prepare_data, write_report
from asr.data.text import Vocabulary, error_rates
from asr.data.validation import Example
from asr.files import atomic_write_text
from asr.inference.bundle import Bundle, save_bundle
from asr.inference.options import DecodeOptions
from asr.inference.transcribe import decode_features, features_log_probs, inference_function
from asr.model.ctc import CTCModel
from asr.model.lm import NgramLM
from asr.model.lm_search import (
    ExtraText,
    LMDecoder,
    check_text_files,
    estimate_character_lm,
    read_extra_text,
    tune_weights,
    tune_word_weights,
)
from asr.model.options import LMKind, LMOptions
from asr.system import SOURCE_ROOT, process_started
from asr.training import checkpoint, cluster, provenance
from asr.training.callbacks import (
    CURVES_FILE,
    METRICS_FILE,
    TB_DIR,
    TrainingDiverged,
    stop_signals,
    training_callbacks,
)
from asr.training.distribute import distributed_dataset, is_distributed, make_strategy
from asr.training.optimizers import averaged_weights, build_optimizer
from asr.training.options import InitCMVN, Resume, RunOptions
from asr.training.state import RunState
from asr.training.sweep import STATUS_FILE
from asr.training.transfer import Source, adopt_source, initialize_from, read_source

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
_last_job_ended = 0.0  # time.time() at the end of this process's previous train() (the jobs of a multirun)
BUNDLE_DIR = "model"
TB_SAMPLES = 3  # validation utterances decoded into TensorBoard each epoch
# What a run writes into its directory; an earlier run's copies are moved aside when starting over.
RUN_FILES = [
    METRICS_FILE,
    RESULT_FILE,
    BUNDLE_DIR,
    checkpoint.CHECKPOINT_DIR,
    TB_DIR,
    CURVES_FILE,
    provenance.PROVENANCE_FILE,
    REPORT_FILE,
    STATUS_FILE,
]


def set_threads(threads: int | None) -> None:
    """Limit TensorFlow's intra/inter-op threads (None: TensorFlow's default); a warning if TF already runs."""
    import tensorflow as tf

    if threads is not None:
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


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make TF ops deterministic (or not)."""
    import tensorflow as tf

    random.seed(seed)
    keras.utils.set_random_seed(seed)  # also seeds NumPy and TensorFlow
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    elif compat.op_determinism_enabled():  # an earlier job in this process (a multirun) turned it on
        compat.disable_op_determinism()


def evaluate(
    bundle: Bundle, examples: list[Example], batch_size: int, samples: int, infer: Callable | None = None
) -> dict:
    """Greedy (with the bundle's language model: its beam search) transcripts of a split, scored: ler, wer,
    utt_acc, n, and the first `samples` results."""
    decoded = decode_features(bundle, [e.features for e in examples], DecodeOptions(batch_size=batch_size), infer)
    hyps = [d["text"] for d in decoded]
    refs = [e.text for e in examples]
    return {
        **error_rates(refs, hyps),
        "hyps": hyps,
        "samples": [
            {"audio": e.key, "ref": r, "hyp": h} for e, r, h in list(zip(examples, refs, hyps, strict=True))[:samples]
        ],
    }


def fit_lm(
    options: LMOptions,
    model: CTCModel,
    vocab: Vocabulary,
    examples: dict,
    batch_size: int,
    infer: Callable,
    extra: ExtraText | None = None,
) -> tuple[LMDecoder, dict]:
    """A character language model of the training transcripts (and of `extra`, lm.text), with the weights of
    those listed in `options` that decode the validation split best; and what was tried (for result.json)."""
    started = time.perf_counter()
    texts = [e.text for e in examples["train"]] + list(extra.sentences if extra is not None else ())
    lm = estimate_character_lm(texts, options.order)
    valid = examples["valid"]
    log_probs = features_log_probs(model, [e.features for e in valid], batch_size, infer)
    decoder, tried = tune_weights(
        LMDecoder(lm, beam_width=options.beam_width),
        log_probs,
        [e.text for e in valid],
        vocab.characters,
        options.alphas,
        options.betas,
    )
    if options.kind == LMKind.word:  # the word model on top of the character model's chosen pair
        words = NgramLM.estimate(texts, options.word_order)
        decoder, more = tune_word_weights(
            replace(decoder, words=words),
            log_probs,
            [e.text for e in valid],
            vocab.characters,
            options.word_weights,
            options.unknown_penalties,
        )
        tried += more
    weights = decoder.weights
    log.info(
        "character %d-gram language model: weight %g, bonus %g per character%s (of %d settings tried on %d "
        "validation utterances)",
        options.order,
        weights.alpha,
        weights.beta,
        f"; word {options.word_order}-gram weight {weights.word:g}, penalty {weights.unknown:g} per unknown word"
        if options.kind == LMKind.word
        else "",
        len(tried),
        len(valid),
    )
    report = {
        "kind": str(options.kind),
        "order": options.order,
        "alpha": decoder.weights.alpha,
        "beta": decoder.weights.beta,
        "beam_width": decoder.beam_width,
        "tried": tried,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if options.kind == LMKind.word:
        report |= {"word_order": options.word_order, "word": weights.word, "unknown": weights.unknown}
    if extra is not None:
        report["text"] = extra.report
    return decoder, report


# Settings added after runs were made: at these values (the behaviour before them) they stay out of the hash, so
# that those runs still resume.
ADDED_AT_DEFAULT = {
    ("data", "trim_silence"): False,
    ("optimizer", "ema_momentum"): None,
    ("data", "train_weights"): [],
    ("trainer", "init_from"): None,
    ("trainer", "freeze_layers"): 0,
    ("trainer", "freeze_epochs"): 0,
    ("trainer", "init_cmvn"): "train",
    ("trainer", "intermediate_ctc"): 0.0,
    ("trainer", "intermediate_ctc_layer"): None,
}


def config_sha256(options: RunOptions) -> str:
    """Hash of the settings that decide a run's training numbers (hashed_settings): a run resumes on another
    number of devices or workers."""
    return hashlib.sha256(json.dumps(hashed_settings(options), sort_keys=True).encode("utf-8")).hexdigest()


def hashed_settings(options: RunOptions) -> dict:
    """The settings that decide a run's training numbers, as JSON values: not resume, progress display, samples
    listed, threads, strategy and devices, feature extraction processes and shards, cache and storage, the
    language model (it comes after training), nor a setting of ADDED_AT_DEFAULT at its default."""
    settings = json.loads(json.dumps(asdict(options)))  # enums as their values
    settings.pop("lm")
    for key in (
        "resume",
        "verbose",
        "samples",
        "threads",
        "checkpoint_every_epochs",
        "checkpoint_every_seconds",
        "strategy",
        "cpu_devices",
    ):
        settings["trainer"].pop(key)
    for key in ("workers", "cache", "cache_dir", "storage", "shard", "num_shards"):
        settings["data"].pop(key)
    for (group, key), default in ADDED_AT_DEFAULT.items():
        if settings[group][key] == default:
            settings[group].pop(key)
    if options.trainer.init_from is not None:  # the source's content, wherever it lies
        settings["trainer"]["init_from"] = read_source(options.trainer.init_from).sha256
    return settings


def start_or_resume(options: RunOptions, run_dir: Path, chief: bool = True) -> checkpoint.Checkpoint | None:
    """The checkpoint to continue from (trainer.resume=auto and one exists), or None after moving any
    earlier run's files in run_dir aside (never deleting them; the chief alone moves them)."""
    found = checkpoint.latest(run_dir) if options.trainer.resume == Resume.auto and run_dir.is_dir() else None
    if found is None:
        if chief:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.move_aside(run_dir, RUN_FILES)
        return None
    if found.state.config_sha256 != config_sha256(options):
        raise checkpoint.CheckpointError(
            f"{run_dir} holds a run with other settings (checkpoint {found.path.name}); resume only with the "
            f"same config, or pass trainer.resume=never to move that run aside and start over"
        )
    log.info("resuming from %s (epoch %d of %d done)", found.path, found.state.epoch, options.trainer.epochs)
    return found


def train(options: RunOptions, run_dir: str | Path, overrides: Sequence[str] = ()) -> float:
    """Train as configured, writing metrics.jsonl, result.json, model/, checkpoints/, tb/, provenance.json,
    prepare_report.json and learning_curves.png into run_dir, resuming from its last checkpoint if it has one;
    returns the best validation LER. Drops the graphs and gradient registrations it made, so the jobs of a
    multirun in one process do not pile up memory (op determinism stays as the job set it)."""
    global _last_job_ended
    known = compat.custom_gradient_names()
    started = max(process_started(), _last_job_ended)  # the process's start, or the end of its previous job
    try:
        return _train(options, Path(run_dir), overrides, started)
    finally:
        _last_job_ended = time.time()
        keras.mixed_precision.set_dtype_policy("float32")  # the next job of a multirun starts from the default
        compat.forget_custom_gradients(known)
        keras.backend.clear_session()
        gc.collect()


def _train(options: RunOptions, run_dir: Path, overrides: Sequence[str], job_started: float) -> float:
    """The body of `train`; `job_started` is the wall-clock time (time.time()) the job's wall_seconds count from."""
    keras.backend.clear_session()  # start each job from nothing (fresh layer names, no old graphs)
    options, source = adopt_source(options)  # trainer.init_from checked before any data is read
    if options.lm.order:
        check_text_files(options.lm.text)
    trainer = options.trainer
    set_threads(trainer.threads)
    workers = cluster.discover()
    strategy = make_strategy(trainer.strategy, workers, trainer.cpu_devices)  # before any other TensorFlow op
    set_determinism(options.seed, trainer.deterministic)
    resumed = start_or_resume(options, run_dir, workers.is_chief)
    if not workers.is_chief:  # the chief alone writes the run directory; the others write into a scratch one
        scratch = Path(tempfile.mkdtemp(prefix=f"asr-worker{workers.index}-"))
        try:
            best = _fit(options, scratch, overrides, job_started, strategy, resumed, source, chief=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(f"worker {workers.index} of {workers.num_workers} done; the chief writes {run_dir}")
        return best
    return _fit(options, run_dir, overrides, job_started, strategy, resumed, source)


def _fit(
    options: RunOptions,
    run_dir: Path,
    overrides: Sequence[str],
    job_started: float,
    strategy,
    resumed: checkpoint.Checkpoint | None,
    source: Source | None = None,
    chief: bool = True,
) -> float:
    """Prepare, fit under `strategy` (from `source`'s weights, or resuming from `resumed`), evaluate, save into
    run_dir (and, the chief, report on the console)."""
    trainer = options.trainer
    cmvn = source.cmvn if source is not None and trainer.init_cmvn == InitCMVN.source else None
    prepared = prepare_data(options.data, options.features, options.model.stride, options.augment, cmvn=cmvn)
    write_report(prepared.report, run_dir)
    vocab = prepared.vocab
    examples = prepared.examples
    # lm.text read before training, so that a file that is not UTF-8 stops the run now, not after it
    extra_text = read_extra_text(options.lm.text, vocab) if options.lm.order and options.lm.text else None
    batch_size, epochs = trainer.batch_size, trainer.epochs
    replicas = strategy.num_replicas_in_sync  # every batch gives each replica at least one utterance
    sources = options.data.train_paths  # data.train_weights: a factor per path, in this order
    groups = np.array([sources.index(e.source) if e.source in sources else 0 for e in examples["train"]], np.int64)
    plans = epoch_plans(
        examples["train"],
        batch_size,
        options.seed,
        trainer.bucketing,
        epochs,
        trainer.batch_frames,
        replicas,
        groups,
        options.data.train_weights,
    )
    steps_per_epoch = len(plans[0].batches)  # the same every epoch
    # float16 layers (variables and the CTC loss float32; Keras adds loss scaling) or float32 throughout
    keras.mixed_precision.set_dtype_policy("mixed_float16" if trainer.mixed_precision else "float32")
    with strategy.scope():
        model = CTCModel(options.features.num_features, vocab.characters, options.model, options.augment, options.seed)
        model.compile(
            optimizer=build_optimizer(options.optimizer, steps_per_epoch, epochs, clip=False),
            clipnorm=options.optimizer.clipnorm,
        )
        transfer = None
        if source is not None:
            model.build_for()
            transfer = initialize_from(model, source)
            transfer.update(freeze_layers=trainer.freeze_layers, freeze_epochs=trainer.freeze_epochs)
        model.freeze_lowest(trainer.freeze_layers if trainer.freeze_epochs else 0)
        model.intermediate_ctc(trainer.intermediate_ctc, trainer.intermediate_ctc_layer)
    origin = provenance.collect(overrides, SOURCE_ROOT, prepared.report["dataset_sha256"])
    if source is not None:
        origin["init_from"] = {"path": trainer.init_from, "bundle": str(source.directory), "sha256": source.sha256}
    provenance.start(run_dir, origin)
    greedy_bundle = Bundle(model, options.features, vocab, prepared.cmvn)
    infer = inference_function(model)  # one traced graph for the TensorBoard samples and the test split
    shown = examples["valid"][:TB_SAMPLES]

    def valid_samples() -> list[dict]:
        with averaged_weights(model):  # the weights that are validated
            return evaluate(greedy_bundle, shown, batch_size, TB_SAMPLES, infer)["samples"]

    samples = valid_samples if shown else None
    state = RunState(config_sha256=config_sha256(options))
    resumed_from = None
    if resumed is not None:
        checkpoint.restore(model, resumed)
        state, resumed_from = resumed.state, resumed.state.epoch  # the callbacks advance state.epoch
    train_keys = [e.key for e in examples["train"]]

    def batch_keys(epoch: int, batch: int) -> list[str]:
        return [train_keys[i] for i in plans[epoch].batches[batch]]

    caught: list[int] = []
    callbacks = training_callbacks(
        state, run_dir, trainer, options.optimizer, [plan.padding_share for plan in plans], samples, batch_keys, caught
    )
    # metrics.jsonl holds exactly the epochs of the checkpoint (a line written after it is dropped)
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in state.records))

    if state.epoch < epochs and not state.stopped:
        valid_data, valid_steps = None, None
        if examples["valid"]:
            valid_plan = epoch_plans(
                examples["valid"], batch_size, None, batch_frames=trainer.batch_frames, min_items=replicas
            )
            valid_data = distributed_dataset(strategy, examples["valid"], valid_plan, repeat=True)
            if is_distributed(strategy):
                valid_steps = len(valid_plan[0].batches)
        with stop_signals(caught):  # SIGINT / SIGTERM end the run after the current batch (StopOnSignal)
            model.fit(
                distributed_dataset(strategy, examples["train"], plans[state.epoch :]),
                validation_data=valid_data,
                validation_steps=valid_steps,
                initial_epoch=state.epoch,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                shuffle=False,  # the dataset reshuffles itself from the run's seed
                verbose=trainer.verbose,
            )
        stall = time.perf_counter() - callbacks[-1].train_ended  # WriteMetrics, the last: sets train_seconds
        if stall > 1.0:  # seen with a Python-generator dataset; kept as a guard
            log.warning("fit returned %.1f s after training ended", stall)
        if is_distributed(strategy):  # every worker holds the same weights: the logs of all workers show it
            log.info("weights after training: sha256 %s", weights_digest(model))
    if trainer.keep_best and state.best_weights is not None:
        model.set_weights(state.best_weights)
        log.info("restored the weights of epoch %d (best validation LER)", state.best_epoch()[0])
    else:  # the moving averages of the weights where the optimizer keeps them (fit did so if it ran)
        model.optimizer.finalize_variable_values(model.trainable_variables)

    decoder, lm_report = (
        fit_lm(options.lm, model, vocab, examples, batch_size, infer, extra_text) if options.lm.order else (None, None)
    )
    test = greedy = None
    if examples["test"]:
        test = evaluate(replace(greedy_bundle, lm=decoder), examples["test"], batch_size, trainer.samples, infer)
        if decoder is not None:
            greedy = evaluate(greedy_bundle, examples["test"], batch_size, 0, infer)
    longest = options.features.seconds(max(len(e.features) for e in examples["train"]))  # at speed 1
    save_bundle(run_dir / BUNDLE_DIR, model, options.features, vocab, prepared.cmvn, longest, decoder, prepared.margins)
    best, best_ler = state.best_epoch()
    result = {
        "best_epoch": best,
        "best_val_ler": best_ler,
        "epochs": len(state.records),
        "train_seconds": round(state.train_seconds, 3),
        "end_of_epoch_seconds": round(sum(r.get("end_of_epoch_seconds", 0.0) for r in state.records), 3),
        "wall_seconds": round(time.time() - job_started, 3),
        "resumed_from_epoch": resumed_from,
        "test": {k: v for k, v in test.items() if k not in ("samples", "hyps")} if test else None,
        "samples": test["samples"] if test else [],
        "rejected": prepared.report["rejected"],
    }
    if transfer is not None:
        result["init_from"] = transfer
    if test and (splits := per_source(test["hyps"], examples["test"])):  # a test split of several paths
        result["test_splits"] = splits
    if decoder is not None:  # `test` is then the language model's; the acoustic model's alone beside it
        result["test_greedy"] = {k: v for k, v in greedy.items() if k not in ("samples", "hyps")} if greedy else None
        result["lm"] = lm_report
    atomic_write_text(run_dir / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    provenance.finish(run_dir, origin)
    if chief:
        report(result, run_dir)
    if not math.isfinite(best_ler):
        raise TrainingDiverged(f"the best validation LER is {best_ler}")
    return float(best_ler)


def per_source(hyps: Sequence[str], examples: Sequence[Example]) -> dict[str, dict] | None:
    """Error rates of the transcripts of each path of a split read from several (None for one)."""
    sources = list(dict.fromkeys(e.source for e in examples))
    if len(sources) < 2:
        return None
    pairs = list(zip(examples, hyps, strict=True))
    refs = {source: [e.text for e, _ in pairs if e.source == source] for source in sources}
    return {source: error_rates(refs[source], [h for e, h in pairs if e.source == source]) for source in sources}


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of a model's weights (the bytes of get_weights(), in order)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()


def report(result: dict, run_dir: Path) -> None:
    """A few human lines on the console."""
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
