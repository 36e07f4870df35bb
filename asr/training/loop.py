"""One training run, top to bottom, in three typed steps: setup_run (data, model, strategy, checkpoint state) ->
fit (the epochs) -> finish_run (language model, test split, bundle, result.json).

`train(options, run_dir)` runs the three and returns the RunResult; it takes typed options (asr.config.to_options
/ asr.config.compose make them from a Hydra config) and writes everything into run_dir; `asr-train` is a thin
wrapper around it.
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from asr import compat
from asr.data.batching import EpochPlan, epoch_plans
from asr.data.preparation import REPORT_FILE, PreparedData, prepare_data, write_prepare_report
from asr.data.text import error_rates
from asr.data.validation import Example
from asr.decoding.lm_search import ExtraText, check_text_files, read_extra_text
from asr.files import atomic_write_text
from asr.inference.bundle import Bundle, save_bundle
from asr.inference.options import DecodeOptions
from asr.inference.transcribe import decode_features, inference_function
from asr.model.ctc import CTCModel
from asr.system import SOURCE_ROOT, process_started
from asr.training import checkpoint, cluster, provenance
from asr.training.callbacks import (
    CURVES_FILE,
    METRICS_FILE,
    TB_DIR,
    StopSignals,
    TrainingDiverged,
    training_callbacks,
)
from asr.training.distribute import distributed_dataset, is_distributed, make_strategy
from asr.training.language_model import fit_lm
from asr.training.optimizers import averaged_weights, build_optimizer
from asr.training.options import InitCMVN, Resume, RunOptions
from asr.training.settings import differences, legacy_sha256, run_settings, settings_sha256
from asr.training.speakers import describe, speaker_spread, split_speakers
from asr.training.state import STATUS_FILE, RunState
from asr.training.transfer import Source, adopt_source, initialize_from

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


@dataclass
class Run:
    """A run set up to fit: what setup_run made, read by fit and finish_run."""

    options: RunOptions  # with the base model's feature and model settings under trainer.init_from
    run_dir: Path  # the run directory
    write_dir: Path  # where this process writes: run_dir, or a scratch folder on a worker other than the chief
    data: PreparedData
    plans: list[EpochPlan]  # one per epoch
    strategy: tf.distribute.Strategy
    model: CTCModel
    state: RunState  # a resumed run's, or a fresh one
    infer: Callable  # the model as one traced inference graph (TensorBoard samples, language model, test split)
    origin: dict  # provenance.json's record
    job_started: float  # time.time() the run's wall_seconds count from
    workers: cluster.Cluster
    resumed_from: int | None = None  # the epoch a resumed run continued after
    source: Source | None = None  # trainer.init_from's bundle
    transfer: dict | None = None  # what was copied from it (result.json's init_from)
    extra_text: ExtraText | None = None  # lm.text, read before training so that a bad file stops the run early

    @property
    def chief(self) -> bool:
        """Whether this process writes the run directory."""
        return self.workers.is_chief

    @property
    def bundle(self) -> Bundle:
        """The model with what decoding it needs (no language model)."""
        return Bundle(self.model, self.options.features, self.data.vocab, self.data.cmvn)


@dataclass(frozen=True)
class RunResult:
    """What a run reached: result.json (to_json) and the return value of train()."""

    best_epoch: int
    best_val_ler: float  # (the training LER without a validation split)
    epochs: int
    train_seconds: float  # wall-clock time of the epochs, over every invocation of a resumed run
    end_of_epoch_seconds: float  # the part of it spent in the callbacks
    wall_seconds: float  # the whole job: start-up, data, training, language model, test, saving
    resumed_from_epoch: int | None
    test: dict | None  # ler, wer, utt_acc, n of the test split (with the language model, if any)
    samples: list[dict]  # the first test transcripts: audio, ref, hyp
    rejected: list[dict]  # the utterances left out (prepare_report.json has the reasons)
    init_from: dict | None = None  # trainer.init_from: what was copied
    test_splits: dict | None = None  # the test figures per path, for a test split of several paths
    test_greedy: dict | None = None  # with a language model: the acoustic model's test figures alone
    lm: dict | None = None  # the language model: settings tried and chosen
    speakers: dict | None = None  # the test CER per speaker where the manifest names speakers (asr.training.speakers)
    averaged: dict | None = None  # trainer.average_last: the epochs averaged, both validation LERs, which was kept

    def to_json(self) -> dict:
        """result.json's content (init_from, test_splits only where there are some; test_greedy and lm with a
        language model)."""
        data = asdict(self)
        for key in ("init_from", "test_splits", "speakers", "averaged"):
            if data[key] is None:
                del data[key]
        if self.lm is None:
            del data["test_greedy"], data["lm"]
        return data


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


def evaluate(bundle: Bundle, examples: list[Example], batch_size: int, samples: int, infer: Callable) -> dict:
    """Greedy (with the bundle's language model: its beam search) transcripts of a split, scored: ler, wer,
    utt_acc, n, and the first `samples` results (hyps: every transcript)."""
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


def start_or_resume(
    options: RunOptions, run_dir: Path, settings: dict, chief: bool = True
) -> checkpoint.Checkpoint | None:
    """The checkpoint to continue from (trainer.resume=auto and one exists; it must hold the same `settings`, the
    run's run_settings), or None after moving any earlier run's files in run_dir aside (never deleting them;
    the chief alone moves them)."""
    found = checkpoint.latest(run_dir) if options.trainer.resume == Resume.auto and run_dir.is_dir() else None
    if found is None:
        if chief:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.move_aside(run_dir, RUN_FILES)
        return None
    if found.state.settings is not None:
        changed = differences(found.state.settings, settings)
    else:  # a checkpoint written before settings were stored: its hash
        changed = [] if found.state.config_sha256 == legacy_sha256(settings) else ["(the hash of the settings)"]
    if changed:
        raise checkpoint.CheckpointError(
            f"{run_dir} holds a run with other settings (checkpoint {found.path.name}: {'; '.join(changed[:4])}); "
            f"resume only with the same config, or pass trainer.resume=never to move that run aside and start over"
        )
    log.info("resuming from %s (epoch %d of %d done)", found.path, found.state.epoch, options.trainer.epochs)
    return found


def train(
    options: RunOptions, run_dir: str | Path, overrides: Sequence[str] = (), source: Source | None = None
) -> RunResult:
    """Train as configured, writing metrics.jsonl, result.json, model/, checkpoints/, tb/, provenance.json,
    prepare_report.json and learning_curves.png into run_dir, resuming from its last checkpoint if it has one
    (`source`: trainer.init_from's bundle, where the caller has read it already: it is read once per command).
    Drops the graphs and gradient registrations it made, so the jobs of a multirun in one process do not pile
    up memory (op determinism stays as the job set it)."""
    global _last_job_ended
    known = compat.custom_gradient_names()
    started = max(process_started(), _last_job_ended)  # the process's start, or the end of its previous job
    run = None
    try:
        run = setup_run(options, Path(run_dir), overrides, started, source)
        fit(run)
        return finish_run(run, average_checkpoints(run))
    finally:
        if run is not None and not run.chief:
            shutil.rmtree(run.write_dir, ignore_errors=True)
        _last_job_ended = time.time()
        keras.mixed_precision.set_dtype_policy("float32")  # the next job of a multirun starts from the default
        compat.forget_custom_gradients(known)
        keras.backend.clear_session()
        gc.collect()


def setup_run(
    options: RunOptions,
    run_dir: Path,
    overrides: Sequence[str] = (),
    job_started: float | None = None,
    source: Source | None = None,
) -> Run:
    """Check the settings, start the strategy, prepare the data (prepare_report.json), build the model (from
    trainer.init_from's weights, or a resumed checkpoint's) and its provenance. `source`: trainer.init_from's bundle
    as read_source read it (None: read here)."""
    keras.backend.clear_session()  # start each job from nothing (fresh layer names, no old graphs)
    options, source = adopt_source(options, source)  # trainer.init_from checked before any data is read
    if options.lm.order:
        check_text_files(options.lm.text)
    trainer = options.trainer
    set_threads(trainer.threads)
    workers = cluster.discover()
    strategy = make_strategy(trainer.strategy, workers, trainer.cpu_devices)  # before any other TensorFlow op
    set_determinism(options.seed, trainer.deterministic)
    settings = run_settings(options, source)  # what a resume must match; trainer.init_from: the base bundle's hash
    resumed = start_or_resume(options, run_dir, settings, workers.is_chief)
    write_dir = run_dir
    if not workers.is_chief:  # the chief alone writes the run directory; the others write into a scratch one
        write_dir = Path(tempfile.mkdtemp(prefix=f"asr-worker{workers.index}-"))
    cmvn = source.cmvn if source is not None and trainer.init_cmvn == InitCMVN.source else None
    data = prepare_data(options.data, options.features, options.model.stride, options.augment, cmvn=cmvn)
    write_prepare_report(data.report, write_dir)
    extra_text = read_extra_text(options.lm.text, data.vocab) if options.lm.order and options.lm.text else None
    plans = training_plans(options, data.examples["train"], strategy.num_replicas_in_sync)
    model, transfer = build_model(options, data, strategy, len(plans[0].batches), source)
    origin = provenance.collect(overrides, SOURCE_ROOT, data.report.dataset_sha256)
    if source is not None:
        origin["init_from"] = {"path": trainer.init_from, "bundle": str(source.directory), "sha256": source.sha256}
    provenance.start(write_dir, origin)
    state, resumed_from = RunState(config_sha256=settings_sha256(settings), settings=settings), None
    if resumed is not None:
        checkpoint.restore(model, resumed)
        state, resumed_from = resumed.state, resumed.state.epoch  # the callbacks advance state.epoch
        state.config_sha256, state.settings = settings_sha256(settings), settings
    return Run(
        options=options,
        run_dir=run_dir,
        write_dir=write_dir,
        data=data,
        plans=plans,
        strategy=strategy,
        model=model,
        state=state,
        infer=inference_function(model),
        origin=origin,
        job_started=process_started() if job_started is None else job_started,
        workers=workers,
        resumed_from=resumed_from,
        source=source,
        transfer=transfer,
        extra_text=extra_text,
    )


def training_plans(options: RunOptions, train: list[Example], replicas: int) -> list[EpochPlan]:
    """The batches of every epoch: seeded, bucketed, weighted by source (data.train_weights), each batch giving
    every replica at least one utterance."""
    sources = options.data.train_paths  # data.train_weights: a factor per path, in this order
    groups = np.array([sources.index(e.source) if e.source in sources else 0 for e in train], np.int64)
    trainer = options.trainer
    return epoch_plans(
        train,
        trainer.batch_size,
        options.seed,
        trainer.bucketing,
        trainer.epochs,
        trainer.batch_frames,
        replicas,
        groups,
        options.data.train_weights,
    )


def build_model(
    options: RunOptions,
    data: PreparedData,
    strategy: tf.distribute.Strategy,
    steps_per_epoch: int,
    source: Source | None,
) -> tuple[CTCModel, dict | None]:
    """The compiled model under `strategy` (from `source`'s weights, if any) and what was copied from it."""
    trainer = options.trainer
    # float16 layers (variables and the CTC loss float32; Keras adds loss scaling) or float32 throughout
    keras.mixed_precision.set_dtype_policy("mixed_float16" if trainer.mixed_precision else "float32")
    with strategy.scope():
        model = CTCModel(
            options.features.num_features, data.vocab.characters, options.model, options.augment, options.seed
        )
        model.compile(
            optimizer=build_optimizer(options.optimizer, steps_per_epoch, trainer.epochs, clip=False),
            clipnorm=options.optimizer.clipnorm,
        )
        transfer = None
        if source is not None:
            model.build_for()
            transfer = initialize_from(model, source)
            transfer.update(freeze_layers=trainer.freeze_layers, freeze_epochs=trainer.freeze_epochs)
        model.freeze_lowest(trainer.freeze_layers if trainer.freeze_epochs else 0)
        model.intermediate_ctc(trainer.intermediate_ctc, trainer.intermediate_ctc_layer)
    return model, transfer


def fit(run: Run) -> None:
    """Train the epochs left (none when a resumed run had ended), writing metrics.jsonl, checkpoints, curves and
    TensorBoard logs; then put the best epoch's weights (trainer.keep_best) or the averaged ones into the model."""
    options, state, model = run.options, run.state, run.model
    trainer = options.trainer
    signals = StopSignals()
    train_keys = [e.key for e in run.data.examples["train"]]
    callbacks = training_callbacks(
        state,
        run.write_dir,
        trainer,
        options.optimizer,
        [plan.padding_share for plan in run.plans],
        validation_samples(run),
        lambda epoch, batch: [train_keys[i] for i in run.plans[epoch].batches[batch]],
        signals,
    )
    # metrics.jsonl holds exactly the epochs of the checkpoint (a line written after it is dropped)
    atomic_write_text(run.write_dir / METRICS_FILE, "".join(json.dumps(r.to_json()) + "\n" for r in state.records))
    if state.epoch < trainer.epochs and not state.stopped:
        valid_data, valid_steps = validation_data(run)
        with signals.catching():  # SIGINT / SIGTERM end the run after the current batch (StopOnSignal)
            model.fit(
                distributed_dataset(run.strategy, run.data.examples["train"], run.plans[state.epoch :]),
                validation_data=valid_data,
                validation_steps=valid_steps,
                initial_epoch=state.epoch,
                epochs=trainer.epochs,
                steps_per_epoch=len(run.plans[0].batches),  # the same every epoch
                callbacks=callbacks,
                shuffle=False,  # the dataset reshuffles itself from the run's seed
                verbose=trainer.verbose,
            )
        if is_distributed(run.strategy):  # every worker holds the same weights: the logs of all workers show it
            log.info("weights after training: sha256 %s", weights_digest(model))
    if trainer.keep_best and state.best_weights is not None:
        model.set_weights(state.best_weights)
        log.info("restored the weights of epoch %d (best validation LER)", state.best_epoch()[0])
    else:  # the moving averages of the weights where the optimizer keeps them (fit did so if it ran)
        model.optimizer.finalize_variable_values(model.trainable_variables)


def average_checkpoints(run: Run) -> dict | None:
    """trainer.average_last: put the mean of the weights of the last epochs into the model where its greedy
    validation LER is lower than that of the weights it holds (the best epoch's or the last's); what was
    compared and kept, for result.json (None when off)."""
    last = min(run.options.trainer.average_last, run.state.epoch)
    if last < 2:
        return None
    epochs = list(range(run.state.epoch - last + 1, run.state.epoch + 1))
    averaged = checkpoint.averaged_weights(run.write_dir, epochs)
    valid, batch_size = run.data.examples["valid"], run.options.trainer.batch_size
    held = [keras.ops.convert_to_numpy(v) for v in run.model.variables]
    held_ler = evaluate(run.bundle, valid, batch_size, 0, run.infer)["ler"] if valid else None
    for variable, value in zip(run.model.variables, averaged, strict=True):
        variable.assign(value)
    averaged_ler = evaluate(run.bundle, valid, batch_size, 0, run.infer)["ler"] if valid else None
    kept = "averaged" if held_ler is None or averaged_ler < held_ler else "held"
    if kept == "held":
        for variable, value in zip(run.model.variables, held, strict=True):
            variable.assign(value)
    log.info(
        "weights of epochs %d-%d averaged: validation LER %s against %s; kept the %s weights",
        epochs[0],
        epochs[-1],
        averaged_ler,
        held_ler,
        kept,
    )
    return {"epochs": epochs, "val_ler": averaged_ler, "held_val_ler": held_ler, "kept": kept}


def validation_samples(run: Run) -> Callable[[], list[dict]] | None:
    """What TensorBoard shows each epoch: the first validation utterances decoded with the validated weights."""
    shown = run.data.examples["valid"][:TB_SAMPLES]
    if not shown:
        return None
    bundle = run.bundle

    def samples() -> list[dict]:
        with averaged_weights(run.model):  # the weights that are validated
            return evaluate(bundle, shown, run.options.trainer.batch_size, TB_SAMPLES, run.infer)["samples"]

    return samples


def validation_data(run: Run) -> tuple[tf.data.Dataset | None, int | None]:
    """The validation batches for fit (repeated: one pass per epoch) and, distributed, their count."""
    valid = run.data.examples["valid"]
    if not valid:
        return None, None
    trainer, replicas = run.options.trainer, run.strategy.num_replicas_in_sync
    plan = epoch_plans(valid, trainer.batch_size, None, batch_frames=trainer.batch_frames, min_items=replicas)
    steps = len(plan[0].batches) if is_distributed(run.strategy) else None
    return distributed_dataset(run.strategy, valid, plan, repeat=True), steps


def finish_run(run: Run, averaged: dict | None = None) -> RunResult:
    """Fit the language model (lm.order), score the test split, save the bundle, write result.json (with
    `averaged`, what average_checkpoints did) and the end of provenance.json; report on the console (the chief)."""
    options, state, data = run.options, run.state, run.data
    batch_size, examples, infer = options.trainer.batch_size, data.examples, run.infer
    decoder, lm_report = (
        fit_lm(options.lm, run.model, data.vocab, examples, batch_size, infer, run.extra_text)
        if options.lm.order
        else (None, None)
    )
    test = greedy = None
    if examples["test"]:
        test = evaluate(replace(run.bundle, lm=decoder), examples["test"], batch_size, options.trainer.samples, infer)
        if decoder is not None:
            greedy = evaluate(run.bundle, examples["test"], batch_size, 0, infer)
    longest = options.features.seconds(max(len(e.features) for e in examples["train"]))  # at speed 1
    save_bundle(
        run.write_dir / BUNDLE_DIR, run.model, options.features, data.vocab, data.cmvn, longest, decoder, data.margins
    )
    best, best_ler = state.best_epoch()
    result = RunResult(
        best_epoch=best,
        best_val_ler=best_ler,
        epochs=len(state.records),
        train_seconds=round(state.train_seconds, 3),
        end_of_epoch_seconds=round(sum(r.end_of_epoch_seconds or 0.0 for r in state.records), 3),
        wall_seconds=round(time.time() - run.job_started, 3),
        resumed_from_epoch=run.resumed_from,
        test=scores(test),
        samples=test["samples"] if test else [],
        rejected=data.report.rejected,
        init_from=run.transfer,
        test_splits=per_source(test["hyps"], examples["test"]) if test else None,
        test_greedy=scores(greedy),
        lm=lm_report,
        speakers=split_speakers(examples["test"], test["hyps"]) if test else None,
        averaged=averaged,
    )
    atomic_write_text(run.write_dir / RESULT_FILE, json.dumps(result.to_json(), indent=2) + "\n")
    provenance.finish(run.write_dir, run.origin)
    if run.chief:
        report(result, run.run_dir)
    else:
        print(f"worker {run.workers.index} of {run.workers.num_workers} done; the chief writes {run.run_dir}")
    if not math.isfinite(best_ler):
        raise TrainingDiverged(f"the best validation LER is {best_ler}")
    return result


def scores(evaluated: dict | None) -> dict | None:
    """The figures of evaluate()'s output (no transcripts)."""
    return {k: v for k, v in evaluated.items() if k not in ("samples", "hyps")} if evaluated else None


def per_source(hyps: Sequence[str], examples: Sequence[Example]) -> dict[str, dict] | None:
    """Error rates of the transcripts of each path of a split read from several (None for one), with `speakers`
    where that path's manifest names them."""
    sources = list(dict.fromkeys(e.source for e in examples))
    if len(sources) < 2:
        return None
    figures = {}
    for source in sources:
        mine = [(e, h) for e, h in zip(examples, hyps, strict=True) if e.source == source]
        refs, found = [e.text for e, _ in mine], [h for _, h in mine]
        figures[source] = error_rates(refs, found)
        spread = speaker_spread(refs, found, [e.speaker for e, _ in mine])
        if spread is not None:
            figures[source]["speakers"] = spread
    return figures


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of a model's weights (the bytes of get_weights(), in order)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()


def report(result: RunResult, run_dir: Path) -> None:
    """A few human lines on the console."""
    print(
        f"trained {result.epochs} epochs in {result.train_seconds:.1f} s; "
        f"best validation LER {result.best_val_ler:.4f} at epoch {result.best_epoch}"
    )
    if result.test:
        t = result.test
        print(f"test: LER {t['ler']:.4f}  WER {t['wer']:.4f}  utterance accuracy {t['utt_acc']:.4f}  (n={t['n']})")
        for s in result.samples[:5]:
            print(f"  {'==' if s['ref'] == s['hyp'] else '!='} ref: {s['ref']!r}  hyp: {s['hyp']!r}")
    if result.speakers:
        print(describe(result.speakers))
    print(f"run directory: {run_dir}")
