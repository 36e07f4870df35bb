"""Speed and memory measured against a baseline in the same run (the `asr-bench` command).

transcribe: the real-time factor (processing seconds / audio seconds) of `asr-transcribe`'s path (files batched
by length, one traced graph) and of a naive baseline (one file at a time, the Keras model called eagerly),
on the same files, in the same process. Machines are noisy: compare the ratio, not the seconds.

jobs: N short training jobs one after another in one process, as a Hydra multirun with the basic launcher
runs them; the resident memory after each job, against the first job's as the baseline, shows whether
memory grows per job.

resample: the resampler of asr.data.audio (soxr) against scipy's polyphase `resample_poly` on the same
signals: audio seconds per wall second, and the quality of each as the signal-to-error ratio of a resampled
sine against the same sine computed at the target rate.

train: seconds per epoch of the seed article's naive way (13 MFCC computed once, every utterance padded to the
longest with a Masking sentinel, in-memory arrays into `fit(batch_size=..., shuffle=True)`, no validation)
against asr-train's pipeline with the preset's settings, on the same training utterances, LSTM stack, batch
size and optimizer (the naive one in a process of its own); feature extraction speed; and the machine's
float32 matmul rate measured in the same run, against the training's FLOP rate. Every figure is wall-clock.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr.errors import UserError
from asr.system import usable_cpus

if TYPE_CHECKING:
    from asr.data.features import FeatureOptions
    from asr.data.preparation import Prepared
    from asr.model.options import ModelOptions
    from asr.training.options import RunOptions


def bench_transcribe(
    model_dir: Path, audio: Sequence[str], batch_size: int, baseline_files: int, hotwords: str | None = None
) -> dict:
    """RTF of batched transcription, greedy, with the bundle's language model (when it has one) and with
    `hotwords` (a file, when given), of the same files in one run, with their error rates where the inputs carry
    transcripts; and of the one-file-at-a-time eager baseline (with the language model when there is one)."""
    import tensorflow as tf

    from asr.data.text import error_rates
    from asr.inference.bundle import load_bundle
    from asr.inference.options import DecodeOptions
    from asr.inference.transcribe import choose_lm, expand_inputs, ready_inference, run
    from asr.model.decoding import decode_batch, utterance_log_probs

    bundle = load_bundle(model_dir)
    items = expand_inputs(audio)
    options = DecodeOptions(batch_size=batch_size)
    infer = ready_inference(bundle, options)  # part of loading, as in asr-transcribe
    decodings = {}
    for name, lm, boost in (
        ("greedy", "none", None),
        ("hotwords", "bundle", hotwords),
        ("language_model", "bundle", None),
    ):
        if (lm == "bundle" and bundle.lm is None and boost is None) or (name == "hotwords" and boost is None):
            continue
        chosen = choose_lm(bundle, replace(options, lm=lm, hotwords=boost))
        started = time.perf_counter()
        records = list(run(items, chosen, options, infer))
        seconds = time.perf_counter() - started
        ok = [r for r in records if "error" not in r]
        audio_seconds = sum(r["duration_s"] for r in ok)
        scored = [r for r in ok if "ref" in r]
        decodings[name] = {"seconds": round(seconds, 3), "rtf": round(seconds / audio_seconds, 5)}
        if scored:
            rates = error_rates([r["ref"] for r in scored], [r["text"] for r in scored])
            decodings[name] |= {"cer": round(rates["ler"], 5), "wer": round(rates["wer"], 5)}
    batched = decodings["language_model" if bundle.lm is not None else "greedy"]
    batched_seconds = batched["seconds"]
    for name in ("language_model", "hotwords"):
        if name in decodings:
            decodings[name]["x_greedy"] = round(decodings[name]["seconds"] / decodings["greedy"]["seconds"], 2)

    from asr.data.audio import load_audio

    subset = items[:baseline_files] if baseline_files else items
    subset_audio = 0.0
    started = time.perf_counter()
    baseline_texts = []
    for item in subset:
        signal = load_audio(item.audio, bundle.features.sample_rate, item.start, item.end)
        subset_audio += len(signal) / bundle.features.sample_rate
        feats = bundle.featurize(signal)[None]
        lengths = np.array([feats.shape[1]], np.int32)
        logits = bundle.model({"features": tf.constant(feats), "lengths": tf.constant(lengths)}, training=False)
        if bundle.lm is not None:
            (log_probs,) = utterance_log_probs(logits, bundle.model.output_lengths(lengths))
            baseline_texts.append(bundle.lm.decode(log_probs, bundle.vocab.characters))
        else:
            baseline_texts += decode_batch(logits, bundle.model.output_lengths(lengths), bundle.vocab)
    baseline_seconds = time.perf_counter() - started
    same = sum(t == r.get("text") for t, r in zip(baseline_texts, records, strict=False))
    batched_rtf = batched_seconds / audio_seconds
    baseline_rtf = baseline_seconds / subset_audio
    return {
        "benchmark": "transcribe",
        "model": str(model_dir),
        "files": len(items),
        "language_model": bundle.lm is not None,
        "failed": len(records) - len(ok),
        "audio_seconds": round(audio_seconds, 3),
        "batched": {"seconds": round(batched_seconds, 3), "rtf": round(batched_rtf, 5), "batch_size": batch_size},
        "decodings": decodings,
        "baseline_one_file_eager": {
            "files": len(subset),
            "seconds": round(baseline_seconds, 3),
            "rtf": round(baseline_rtf, 5),
        },
        "speedup_vs_baseline": round(baseline_rtf / batched_rtf, 2),
        "identical_transcripts": f"{same}/{len(subset)}",
    }


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
    growth = (after[-1]["rss_mb"] - after[0]["rss_mb"]) / max(jobs - 1, 1)
    return {
        "benchmark": "jobs",
        "overrides": list(overrides),
        "jobs": after,
        "baseline_rss_mb_after_first_job": after[0]["rss_mb"],
        "growth_mb_per_job_after_the_first": round(growth, 2),
    }


def machine() -> dict:
    """Where the numbers were taken."""
    import tensorflow as tf

    return {"host": platform.node(), "cpus": usable_cpus(), "python": platform.python_version(), "tf": tf.__version__}


# Conversions to time in `asr-bench resample`: the rates corpora come in, to the two feature rates.
RESAMPLE_CASES = ((44100, 16000), (22050, 16000), (48000, 16000), (8000, 16000), (16000, 8000))
RESAMPLE_TONE_HZ = 1000.0  # well inside every band of RESAMPLE_CASES


def _tone(rate: int, seconds: float) -> np.ndarray:
    """A 1 kHz sine at half scale, float32."""
    return (0.5 * np.sin(2 * np.pi * RESAMPLE_TONE_HZ * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def _snr_db(resampled: np.ndarray, reference: np.ndarray) -> float:
    """Signal-to-error ratio (dB) away from the edges (filters ring there)."""
    n = min(len(resampled), len(reference))
    edge = n // 10
    error = resampled[edge : n - edge] - reference[edge : n - edge]
    return float(10 * np.log10(np.sum(reference[edge : n - edge] ** 2) / max(np.sum(error**2), 1e-30)))


def bench_resample(seconds: float = 60.0, repeats: int = 3) -> dict:
    """soxr (what asr.data.audio uses) against scipy.signal.resample_poly: speed and quality per conversion."""
    import math

    from scipy.signal import resample_poly

    from asr.data.audio import resample

    def poly(x: np.ndarray, rate: int, target: int) -> np.ndarray:
        g = math.gcd(rate, target)
        return resample_poly(x, target // g, rate // g).astype(np.float32)

    cases = []
    for rate, target in RESAMPLE_CASES:
        signal, reference = _tone(rate, seconds), _tone(target, seconds)
        row = {"from_hz": rate, "to_hz": target}
        for name, function in (("soxr", resample), ("resample_poly", poly)):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                out = function(signal, rate, target)
                times.append(time.perf_counter() - started)
            row[f"{name}_audio_s_per_s"] = round(seconds / min(times), 1)
            row[f"{name}_snr_db"] = round(_snr_db(out, reference), 1)
        row["speedup"] = round(row["soxr_audio_s_per_s"] / row["resample_poly_audio_s_per_s"], 2)
        cases.append(row)
    return {"what": "resample", "seconds_of_audio": seconds, "repeats": repeats, "cases": cases}


# --- asr-bench train ---------------------------------------------------------------------------------------------

WARMUP_EPOCHS = 1  # the first epoch of each pipeline traces its graphs: timed, but left out of the figures
# The seed article's features: python_speech_features.mfcc's default 13 cepstra, no deltas, computed once.
NAIVE_NUMCEP = 13
# Padding value of the naive arrays, masked by keras.layers.Masking: far outside scalar-normalized MFCC values
# (|x| < ~20), so no real frame equals it.
NAIVE_PAD_VALUE = -100.0
MATMUL_SIZE = 2048  # the "practical peak" shape: [2048, 2048] x [2048, 2048], float32
MATMUL_REPEATS = 3  # timed runs of each matmul loop after one warm-up run; the fastest is reported
# Each timed loop at an LSTM step shape multiplies about this many FLOPs: a step's matmul is a few MFLOP, too
# short to time alone, so the loop repeats it inside one graph (no Python between the products).
MATMUL_LOOP_FLOP = 1e9
FLOP_PER_MULTIPLY_ADD = 2
LSTM_GATES = 4  # input, forget, cell and output gate: one [input + units, units] product each
# Backward pass ~ 2x the forward FLOPs (gradients with respect to the activations and to the weights): a
# training step is ~ 3x a forward pass.
TRAINING_FLOP_FACTOR = 3
COLD_MAX_FILES = 3000  # the uncached extraction is timed over at most this many files (it is the slow one)


def epoch_figures(seconds: Sequence[float]) -> dict:
    """median, min and max of the measured epochs' seconds (after the warm-up)."""
    measured = list(seconds[WARMUP_EPOCHS:])
    return {
        "median": round(statistics.median(measured), 3),
        "min": round(min(measured), 3),
        "max": round(max(measured), 3),
    }


def refuse_conv_front_end(conv_layers: int) -> None:
    """The FLOP counts cover stacked frames into the LSTM stack: a convolutional front-end would go uncounted."""
    if conv_layers:
        raise UserError(
            f"model.conv_layers={conv_layers}: asr-bench counts the FLOPs of stacked frames into the LSTM stack "
            "and would leave the convolutions out; benchmark with model.conv_layers=0 (time a run with the "
            "front-end through asr-train's train_seconds)"
        )


def stack_forward_flop_per_frame(
    input_width: int, units: int, layers: int, bidirectional: bool, classes: int
) -> tuple[float, list[int]]:
    """Forward FLOPs per LSTM step of the (Bi)LSTM stack plus the output layer (the gate products only:
    elementwise gate arithmetic is < 1 % of them), and each layer's input width."""
    directions = 2 if bidirectional else 1
    flop, width, widths = 0.0, input_width, []
    for _ in range(layers):
        widths.append(width)
        flop += directions * FLOP_PER_MULTIPLY_ADD * LSTM_GATES * units * (width + units)
        width = units * directions
    return flop + FLOP_PER_MULTIPLY_ADD * width * classes, widths


def matmul_gflops(m: int, k: int, n: int, repeats: int = MATMUL_REPEATS) -> float:
    """GFLOP/s of TensorFlow's float32 matmul [m, k] x [k, n]: the fastest of `repeats` timed graph loops."""
    import tensorflow as tf

    a, b = tf.random.normal([m, k]), tf.random.normal([k, n])
    flop = FLOP_PER_MULTIPLY_ADD * m * k * n
    inner = max(1, math.ceil(MATMUL_LOOP_FLOP / flop))

    @tf.function
    def loop() -> tf.Tensor:
        def body(i: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = a + tf.cast(i, tf.float32)  # depends on i: every product is computed, none hoisted or merged
            return i + 1, total + tf.reduce_sum(tf.matmul(x, b))

        return tf.while_loop(lambda i, _: i < inner, body, (tf.constant(0), tf.constant(0.0)), parallel_iterations=1)[1]

    loop().numpy()  # warm-up: tracing and the first run
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        loop().numpy()
        times.append(time.perf_counter() - started)
    return flop * inner / min(times) / 1e9


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (getrusage ru_maxrss: KB on Linux), in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(function: Callable, *args: object) -> dict:
    """function(*args) in a fresh spawned process (its own TensorFlow state, its own peak memory)."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _epoch_timer() -> object:
    """A Keras callback recording each epoch's wall time (from the end of the previous one; the first from the
    start of training) and the validation time inside it."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall seconds per epoch and of each epoch's validation."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[float] = []
            self.validation: list[float] = []
            self._mark = self._test_started = 0.0
            self._test_seconds = 0.0

        def on_train_begin(self, logs: dict | None = None) -> None:
            self._mark = time.perf_counter()

        def on_test_begin(self, logs: dict | None = None) -> None:
            self._test_started = time.perf_counter()

        def on_test_end(self, logs: dict | None = None) -> None:
            self._test_seconds += time.perf_counter() - self._test_started

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = time.perf_counter()
            self.epochs.append(now - self._mark)
            self.validation.append(self._test_seconds)
            self._mark, self._test_seconds = now, 0.0

    return EpochTimer()


def _prepare_limited(options: RunOptions, limit: int | None, fraction: float = 1.0) -> tuple[Prepared, list]:
    """The prepared data of asr-train (prepare_data) and the training split's utterances; with `limit`, the first
    `limit` utterances of the training and validation splits (no test split); with `fraction`, the first
    `fraction` of the training split (above 1: the whole split repeated, then a part of it again)."""
    from asr.data.preparation import load_data, prepare_data

    splits = load_data(options.data)
    if limit is not None:
        splits = {"train": splits["train"][:limit], "valid": splits["valid"][:limit], "test": []}
    if fraction != 1.0:
        train = splits["train"]
        count = round(len(train) * fraction)
        splits = {**splits, "train": [train[i % len(train)] for i in range(count)], "test": []}
    prepared = prepare_data(options.data, options.features, options.model.stride, options.augment, splits)
    return prepared, splits["train"]


def train_ours(options: RunOptions, epochs: int, limit: int | None, fraction: float = 1.0) -> dict:
    """asr-train's pipeline with the preset's settings: prepared (cached) features, length-bucketed ragged
    batches, CTCModel, the preset's optimizer, fit with validation each epoch; wall seconds per epoch and what
    the other measurements need (the training utterances, the model's shape). Op determinism, which the preset
    may switch on, is left as it was before."""
    import keras

    from asr import compat

    determinism = compat.op_determinism_enabled()
    try:
        return _train_ours(options, epochs, limit, fraction)
    finally:
        keras.backend.clear_session()
        if determinism != compat.op_determinism_enabled():
            if determinism:
                import tensorflow as tf

                tf.config.experimental.enable_op_determinism()
            else:
                compat.disable_op_determinism()


def _train_ours(options: RunOptions, epochs: int, limit: int | None, fraction: float) -> dict:
    """The body of `train_ours`."""
    import keras

    from asr.data.batching import epoch_plans, make_dataset
    from asr.data.features import stacked_frames
    from asr.model.ctc import CTCModel
    from asr.training.loop import set_determinism, set_threads
    from asr.training.optimizers import build_optimizer

    trainer = options.trainer
    keras.backend.clear_session()
    set_threads(trainer.threads)
    set_determinism(options.seed, trainer.deterministic)
    prepared, utterances = _prepare_limited(options, limit, fraction)
    train, valid = prepared.examples["train"], prepared.examples.get("valid", [])
    vocab = prepared.vocab
    model = CTCModel(options.features.num_features, vocab.characters, options.model, options.augment, options.seed)
    plans = epoch_plans(train, trainer.batch_size, options.seed, trainer.bucketing, epochs, trainer.batch_frames)
    steps = len(plans[0].batches)
    model.compile(
        optimizer=build_optimizer(options.optimizer, steps, trainer.epochs, clip=False),
        clipnorm=options.optimizer.clipnorm,
    )
    valid_plan = epoch_plans(valid, trainer.batch_size, None, batch_frames=trainer.batch_frames) if valid else None
    valid_data = make_dataset(valid, valid_plan) if valid else None
    timer = _epoch_timer()
    model.fit(
        make_dataset(train, plans),
        validation_data=valid_data,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=[timer],
        shuffle=False,
        verbose=0,
    )
    stride = options.model.stride
    frames = [  # LSTM steps of the real frames of each epoch's drawn speed variants
        int(
            sum(
                stacked_frames(len((e.features, *e.variants)[k]), stride)
                for e, k in zip(train, plan.variant, strict=True)
            )
        )
        for plan in plans
    ]
    by_key = {u.key: u for u in utterances}
    items = [(str(by_key[e.key].audio), by_key[e.key].start, by_key[e.key].end, e.labels.tolist()) for e in train]
    return {
        "epoch_seconds": timer.epochs,
        "validation_seconds": timer.validation,
        "padding_shares": [plan.padding_share for plan in plans],
        "lstm_steps_per_epoch": frames,
        "valid_lstm_steps": int(sum(stacked_frames(len(e.features), stride) for e in valid)),
        "valid_utterances": len(valid),
        "steps_per_epoch": steps,
        "input_width": options.features.num_features * stride,
        "classes": len(vocab.characters) + 1,
        "items": items,
        "storage": prepared.report["storage"],
        "feature_bytes": prepared.report["feature_bytes"],
        "peak_rss_mb": peak_rss_mb(),
    }


def naive_mfcc(signal: np.ndarray, options: FeatureOptions) -> np.ndarray:
    """The seed article's features: 13 MFCC (python_speech_features), one scalar mean and std per utterance."""
    from python_speech_features import mfcc

    feats = mfcc(signal, samplerate=options.sample_rate, numcep=NAIVE_NUMCEP, nfft=options.fft_size)
    return ((feats - feats.mean()) / max(float(feats.std()), 1e-8)).astype(np.float32)


def naive_arrays(features: Sequence[np.ndarray], labels: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """x [N, T, 13]: every utterance padded with NAIVE_PAD_VALUE to the longest; y [N, 1 + L]: the frame count,
    then the labels padded with -1 (the count rides in y so that Keras's loss gets it with the batch)."""
    longest, most = max(len(f) for f in features), max(len(t) for t in labels)
    x = np.full((len(features), longest, features[0].shape[1]), NAIVE_PAD_VALUE, np.float32)
    y = np.full((len(features), 1 + most), -1, np.int32)
    for i, (f, t) in enumerate(zip(features, labels, strict=True)):
        x[i, : len(f)] = f
        y[i, 0] = len(f)
        y[i, 1 : 1 + len(t)] = t
    return x, y


def naive_model(options: ModelOptions, classes: int) -> object:
    """keras.Sequential-style functional model: Masking on the pad value, the preset's (Bi)LSTM stack with its
    dropout, Dense logits (the blank last), ended by an identity that drops the mask: the loss is per
    utterance, Keras would otherwise weigh it per frame."""
    import keras
    import tensorflow as tf

    class EndMask(keras.layers.Layer):
        """Identity whose output carries no Keras mask."""

        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs: tf.Tensor) -> tf.Tensor:
            return tf.identity(inputs)  # a new tensor: the input's mask attribute stays behind

        def compute_mask(self, inputs: tf.Tensor, mask: tf.Tensor | None = None) -> None:
            return None

    inputs = keras.Input(shape=(None, NAIVE_NUMCEP))
    x = keras.layers.Masking(mask_value=NAIVE_PAD_VALUE)(inputs)
    for _ in range(options.num_layers):
        lstm = keras.layers.LSTM(options.units, return_sequences=True)
        x = keras.layers.Bidirectional(lstm)(x) if options.bidirectional else lstm(x)
        x = keras.layers.Dropout(options.dropout)(x)
    return keras.Model(inputs, EndMask()(keras.layers.Dense(classes)(x)))


def packed_ctc_loss(blank: int) -> Callable:
    """CTC loss per utterance of y = [frame count, labels padded with -1] (see naive_arrays) and the logits."""
    import keras

    def loss(y_true: object, y_pred: object) -> object:
        y_true = keras.ops.cast(y_true, "int32")  # Keras hands y over as float32
        labels = y_true[:, 1:]
        label_lengths = keras.ops.sum(keras.ops.cast(labels >= 0, "int32"), axis=1)
        return keras.ops.ctc_loss(keras.ops.maximum(labels, 0), y_pred, label_lengths, y_true[:, 0], mask_index=blank)

    return loss


def train_naive(options: RunOptions, items: Sequence[tuple], classes: int, epochs: int) -> dict:
    """The seed article's way (run in a spawned process of its own): 13 MFCC computed once per utterance, every
    utterance padded to the longest with a Masking sentinel, in-memory arrays into fit(batch_size, shuffle=True),
    no validation; the preset's LSTM stack and optimizer. Wall seconds per epoch, padding share, peak memory."""
    import keras

    from asr.data.audio import load_audio
    from asr.training.optimizers import build_optimizer

    keras.backend.clear_session()
    keras.utils.set_random_seed(options.seed)
    started = time.perf_counter()
    features = [naive_mfcc(load_audio(a, options.features.sample_rate, s, e), options.features) for a, s, e, _ in items]
    feature_seconds = time.perf_counter() - started
    x, y = naive_arrays(features, [labels for *_, labels in items])
    real = int(y[:, 0].sum())
    batch_size = options.trainer.batch_size
    model = naive_model(options.model, classes)
    steps = math.ceil(len(x) / batch_size)
    model.compile(
        optimizer=build_optimizer(options.optimizer, steps, options.trainer.epochs), loss=packed_ctc_loss(classes - 1)
    )
    timer = _epoch_timer()
    model.fit(x, y, batch_size=batch_size, shuffle=True, epochs=epochs, callbacks=[timer], verbose=0)
    return {
        "epoch_seconds": timer.epochs,
        "feature_seconds": feature_seconds,
        "padding_share": float((x.shape[0] * x.shape[1] - real) / real),
        "frames": real,
        "padded_shape": list(x.shape),
        "peak_rss_mb": peak_rss_mb(),
    }


def audio_seconds(items: Sequence[tuple]) -> float:
    """Seconds of audio of (audio, start, end, labels) items, from the files' headers and the cuts."""
    from asr.data.audio import audio_info

    total = 0.0
    for audio, start, end, _ in items:
        seconds = audio_info(audio).seconds
        total += min(seconds if end is None else end, seconds) - (start or 0.0)
    return total


def bench_features(options: RunOptions, items: Sequence[tuple]) -> dict:
    """Feature extraction of the training split (speed 1) as asr-train does it (extract_all, data.workers
    processes, all cores by default), in audio seconds per wall second: from the feature cache (every file a
    hit), and computed without it over the first COLD_MAX_FILES files."""
    from asr.data.extraction import FeatureCache, Job, default_cache_dir, extract_all

    jobs = [Job(audio, start, end) for audio, start, end, _ in items]
    workers = options.data.workers or 0
    cache_dir = Path(options.data.cache_dir) if options.data.cache_dir else default_cache_dir()
    cache = FeatureCache(cache_dir, options.features)
    _, stats = extract_all(jobs, options.features, cache, workers)
    if stats.cache_misses:  # data.cache=false: the run above filled the cache, time the hits now
        _, stats = extract_all(jobs, options.features, cache, workers)
    cold_items = items[:COLD_MAX_FILES]
    _, cold = extract_all(jobs[: len(cold_items)], options.features, None, workers)
    return {
        "audio_seconds_per_second_cached": round(audio_seconds(items) / stats.feature_seconds, 1),
        "cached_files": len(jobs),
        "cache_hits": stats.cache_hits,
        "audio_seconds_per_second_cold": round(audio_seconds(cold_items) / cold.feature_seconds, 1),
        "cold_files": len(cold_items),
        "workers": workers or usable_cpus(),
    }


def bench_machine(batch_size: int, widths: Sequence[int], units: int, bidirectional: bool) -> dict:
    """The machine's matmul rate measured now: at 2048^3 (the practical peak) and at each LSTM layer's step
    shape [batch, input + units] x [input + units, 4 units], combined weighted by the layers' FLOPs."""
    directions = 2 if bidirectional else 1
    shapes, flop, seconds = [], 0.0, 0.0
    for width in dict.fromkeys(widths):  # distinct input widths, in layer order
        m, k, n = batch_size, width + units, LSTM_GATES * units
        rate = matmul_gflops(m, k, n)
        layer_flop = widths.count(width) * directions * FLOP_PER_MULTIPLY_ADD * m * k * n
        flop, seconds = flop + layer_flop, seconds + layer_flop / rate
        shapes.append({"shape": [m, k, n], "layers": widths.count(width), "gflops": round(rate, 2)})
    return {
        **machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "matmul_gflops_2048": round(matmul_gflops(MATMUL_SIZE, MATMUL_SIZE, MATMUL_SIZE), 2),
        "matmul_gflops_lstm_step": round(flop / seconds, 2),
        "lstm_step_shapes": shapes,
        "matmul_timing": f"fastest of {MATMUL_REPEATS} graph loops after a warm-up, float32, TensorFlow's threads",
    }


def bench_train(overrides: Sequence[str], epochs: int, naive_epochs: int, limit: int | None = None) -> dict:
    """Seconds per epoch of asr-train's pipeline (first, in this process) and of the naive padded Keras one (in
    a spawned process of its own, so that each peak memory is its own) on the same training utterances, model
    shape and optimizer; feature extraction speed; the machine's matmul rate and the share of it the training
    reaches (flops_utilization)."""
    from asr.config import compose

    options = compose(overrides)
    refuse_conv_front_end(options.model.conv_layers)
    started, began = time.perf_counter(), datetime.now().astimezone()
    ours = train_ours(options, epochs, limit)  # the first phase here: this process's peak memory is its peak
    items = ours.pop("items")
    naive = in_child(train_naive, options, items, ours["classes"], naive_epochs)
    seconds = audio_seconds(items)
    features = bench_features(options, items)
    shape = options.model
    forward, widths = stack_forward_flop_per_frame(
        ours["input_width"], shape.units, shape.num_layers, shape.bidirectional, ours["classes"]
    )
    naive_forward, _ = stack_forward_flop_per_frame(
        NAIVE_NUMCEP, shape.units, shape.num_layers, shape.bidirectional, ours["classes"]
    )
    hardware = bench_machine(options.trainer.batch_size, widths, shape.units, shape.bidirectional)

    ours_epochs = epoch_figures(ours["epoch_seconds"])
    train_only = [e - v for e, v in zip(ours["epoch_seconds"], ours["validation_seconds"], strict=True)]
    ours_train = epoch_figures(train_only)
    naive_epochs_fig = epoch_figures(naive["epoch_seconds"])
    steps = statistics.mean(ours["lstm_steps_per_epoch"][WARMUP_EPOCHS:])
    training_flop = TRAINING_FLOP_FACTOR * forward * steps
    naive_flop = TRAINING_FLOP_FACTOR * naive_forward * naive["frames"]
    training_gflops = training_flop / ours_train["median"] / 1e9
    return {
        "benchmark": "train",
        "preset": options.name,
        "overrides": list(overrides),
        "date": began.isoformat(timespec="seconds"),  # when the measurements began
        "wall_seconds": round(time.perf_counter() - started, 1),
        "cpus": usable_cpus(),
        "epochs": {"ours": epochs, "naive": naive_epochs, "warmup": WARMUP_EPOCHS},
        "data": {
            "train_utterances": len(items),
            "train_audio_seconds": round(seconds, 2),
            "valid_utterances": ours["valid_utterances"],
            "limit": limit,
        },
        "naive": {
            "what": (
                f"{NAIVE_NUMCEP} MFCC computed once, every utterance padded to the longest (Masking), in-memory "
                "arrays into fit(batch_size, shuffle=True), dense-label CTC, no validation"
            ),
            "epoch_seconds": naive_epochs_fig,
            "epoch_seconds_each": [round(s, 3) for s in naive["epoch_seconds"]],
            "audio_seconds_per_second": round(seconds / naive_epochs_fig["median"], 1),
            "padding_share": round(naive["padding_share"], 4),
            "padded_shape": naive["padded_shape"],
            "feature_seconds": round(naive["feature_seconds"], 3),
            "peak_rss_mb": round(naive["peak_rss_mb"], 1),
        },
        "ours": {
            "what": (
                "asr-train's data path and model (cached features, the preset's speeds and masks, bucketed ragged "
                "batches, CTCModel, the preset's optimizer), fit with validation each epoch; no checkpoints, "
                "TensorBoard or metric files"
            ),
            "epoch_seconds": ours_epochs,
            "epoch_seconds_each": [round(s, 3) for s in ours["epoch_seconds"]],
            "train_seconds_without_validation": ours_train,
            "validation_seconds": epoch_figures(ours["validation_seconds"]),
            "audio_seconds_per_second": round(seconds / ours_epochs["median"], 1),
            "padding_share": round(statistics.mean(ours["padding_shares"][WARMUP_EPOCHS:]), 4),
            "steps_per_epoch": ours["steps_per_epoch"],
            "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        },
        "peak_rss": (
            "ru_maxrss, TensorFlow included: ours, of this process after its phase, the first it runs; naive, of "
            "its own spawned process"
        ),
        "train_speedup": round(naive_epochs_fig["median"] / ours_epochs["median"], 2),
        "train_speedup_without_validation": round(naive_epochs_fig["median"] / ours_train["median"], 2),
        "features": features,
        "machine": hardware,
        "model": {
            "num_layers": shape.num_layers,
            "units": shape.units,
            "bidirectional": shape.bidirectional,
            "stride": shape.stride,
            "batch_size": options.trainer.batch_size,
            "optimizer": options.optimizer.name.value,
            "layer_input_widths": widths,
            "forward_flop_per_lstm_step": forward,
            "lstm_steps_per_epoch": round(steps),
            "training_gflop_per_epoch": round(training_flop / 1e9, 3),
            "training_gflops": round(training_gflops, 3),
            "flop_count": (
                f"gate products {FLOP_PER_MULTIPLY_ADD} x {LSTM_GATES} x units x (input + units) per layer and "
                f"direction, plus the output layer, per real LSTM step; training = {TRAINING_FLOP_FACTOR} x forward;"
                " training_gflops over the epoch's median time without validation"
            ),
            "naive_training_gflop_per_epoch": round(naive_flop / 1e9, 3),
            "naive_training_gflops_real_frames": round(naive_flop / naive_epochs_fig["median"] / 1e9, 3),
            # Masking skips no arithmetic: the naive LSTMs compute every padded frame too
            "naive_training_gflops_with_padding": round(
                naive_flop * (1 + naive["padding_share"]) / naive_epochs_fig["median"] / 1e9, 3
            ),
        },
        "flops_utilization": round(training_gflops / hardware["matmul_gflops_2048"], 4),
    }


LSTM_BATCH_SIZES = (8, 16, 32, 64, 128)
LSTM_FRAMES = 150  # LSTM steps per timed batch: about a 3 s sentence at stride 2, 4.5 s at stride 3
LSTM_REPEATS = 5  # timed steps per variant after two warm-up steps; the median is reported
# What each variant of the LSTM stack changes (Keras 3 LSTM on TensorFlow's CPU backend)
LSTM_VARIANTS = {
    "default": {},  # what asr-train runs: keras.layers.LSTM, implementation 2 (one fused gate product per step)
    "implementation_1": {"implementation": 1},  # four smaller gate products per step
    "unroll": {"unroll": True},  # the step loop unrolled into one graph (fixed length only)
    "xla": {"jit_compile": True},  # the whole step compiled by XLA (without the CTC loss, which XLA lacks)
}


def _lstm_step_seconds(
    model_options: ModelOptions, input_width: int, batch: int, frames: int, variant: dict, repeats: int
) -> float:
    """Median seconds of one training step (forward, backward, Adam update) of the (Bi)LSTM stack and output layer
    on a random [batch, frames, input_width] batch with a mean-square loss, as `variant` builds it."""
    import keras
    import tensorflow as tf

    layer_options = {k: v for k, v in variant.items() if k in ("implementation", "unroll")}
    inputs = keras.Input((frames, input_width))
    x = inputs
    for _ in range(model_options.num_layers):
        lstm = keras.layers.LSTM(model_options.units, return_sequences=True, **layer_options)
        x = keras.layers.Bidirectional(lstm)(x) if model_options.bidirectional else lstm(x)
    model = keras.Model(inputs, keras.layers.Dense(32)(x))
    optimizer = keras.optimizers.Adam()
    features = tf.random.normal([batch, frames, input_width], seed=0)

    @tf.function(jit_compile=variant.get("jit_compile", False))
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(features, training=True)))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    for _ in range(2):
        step().numpy()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - began)
    keras.backend.clear_session()
    return statistics.median(times)


def bench_lstm(
    overrides: Sequence[str],
    batch_sizes: Sequence[int] = LSTM_BATCH_SIZES,
    frames: int = LSTM_FRAMES,
    repeats: int = LSTM_REPEATS,
) -> dict:
    """What bounds the training's FLOP rate: one training step of the preset's LSTM stack per batch size and
    per implementation variant, as GFLOP/s and as a share of the 2048^3 matmul rate measured in the same run."""
    from asr.config import compose

    options = compose(overrides)
    refuse_conv_front_end(options.model.conv_layers)
    if options.trainer.threads is not None:  # before TensorFlow runs anything: asr-train's thread settings
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(options.trainer.threads)
        tf.config.threading.set_inter_op_parallelism_threads(options.trainer.threads)
    began = datetime.now().astimezone()
    shape = options.model
    input_width = options.features.num_features * shape.stride
    forward, widths = stack_forward_flop_per_frame(input_width, shape.units, shape.num_layers, shape.bidirectional, 32)
    peak = matmul_gflops(MATMUL_SIZE, MATMUL_SIZE, MATMUL_SIZE)
    rows = []
    for name, variant in LSTM_VARIANTS.items():
        for batch in batch_sizes if name == "default" else (options.trainer.batch_size,):
            seconds = _lstm_step_seconds(shape, input_width, batch, frames, variant, repeats)
            gflops = TRAINING_FLOP_FACTOR * forward * batch * frames / seconds / 1e9
            step_shape = [batch, widths[0] + shape.units, LSTM_GATES * shape.units]
            rows.append(
                {
                    "variant": name,
                    "batch": batch,
                    "step_seconds": round(seconds, 4),
                    "ms_per_lstm_step": round(seconds / frames * 1e3, 3),
                    "training_gflops": round(gflops, 2),
                    "utilization": round(gflops / peak, 4),
                    "matmul_gflops_at_step_shape": round(matmul_gflops(*step_shape), 2),
                }
            )
    return {
        "benchmark": "lstm",
        "preset": options.name,
        "overrides": list(overrides),
        "date": began.isoformat(timespec="seconds"),
        "cpus": usable_cpus(),
        "tensorflow_threads": _tf_threads(),
        "model": {
            "num_layers": shape.num_layers,
            "units": shape.units,
            "bidirectional": shape.bidirectional,
            "input_width": input_width,
            "frames": frames,
        },
        "matmul_gflops_2048": round(peak, 2),
        "rows": rows,
        "what": (
            "one training step (forward, backward, Adam) of the LSTM stack and a Dense layer on a random batch with "
            "a mean-square loss (no CTC, no data pipeline); median of the timed steps after two warm-ups"
        ),
    }


def _tf_threads() -> dict:
    """TensorFlow's intra- and inter-op thread settings (0: TensorFlow picks, one per core)."""
    import tensorflow as tf

    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def lstm_table(result: dict) -> str:
    """A few lines of `bench_lstm`'s result for the console."""
    lines = [f"{'variant':18}{'batch':>6}{'s/step':>9}{'GFLOP/s':>9}{'of peak':>9}{'matmul at step':>16}"]
    for r in result["rows"]:
        lines.append(
            f"{r['variant']:18}{r['batch']:>6}{r['step_seconds']:>9.3f}{r['training_gflops']:>9.1f}"
            f"{r['utilization']:>9.1%}{r['matmul_gflops_at_step_shape']:>16.1f}"
        )
    lines.append(f"matmul 2048^3: {result['matmul_gflops_2048']:.1f} GFLOP/s")
    return "\n".join(lines)


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


def train_table(result: dict) -> str:
    """A few lines of `bench_train`'s result for the console."""
    naive, ours = result["naive"], result["ours"]
    rows = [
        ("seconds per epoch (median)", "epoch_seconds", "median", "{:.2f}"),
        ("  min", "epoch_seconds", "min", "{:.2f}"),
        ("  max", "epoch_seconds", "max", "{:.2f}"),
        ("audio seconds per second", "audio_seconds_per_second", None, "{:.1f}"),
        ("padding share", "padding_share", None, "{:.1%}"),
        ("peak RSS (MB)", "peak_rss_mb", None, "{:.0f}"),
    ]
    lines = [f"{'':28}{'naive':>12}{'ours':>12}"]
    for label, key, sub, form in rows:
        values = [side[key][sub] if sub else side[key] for side in (naive, ours)]
        lines.append(f"{label:28}" + "".join(f"{form.format(v):>12}" for v in values))
    features, hardware, model = result["features"], result["machine"], result["model"]
    lines += [
        f"train_speedup {result['train_speedup']:.2f}x "
        f"(without ours' validation {result['train_speedup_without_validation']:.2f}x)",
        f"features: {features['audio_seconds_per_second_cached']:.0f} audio s/s cached, "
        f"{features['audio_seconds_per_second_cold']:.0f} computed",
        f"matmul: {hardware['matmul_gflops_2048']:.1f} GFLOP/s at 2048^3, {hardware['matmul_gflops_lstm_step']:.1f} "
        f"at the LSTM step shapes; training {model['training_gflops']:.2f} GFLOP/s = "
        f"{result['flops_utilization']:.1%} of the 2048^3 figure",
    ]
    return "\n".join(lines)
