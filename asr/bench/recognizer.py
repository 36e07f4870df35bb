"""`asr-bench recognizer RUN [--stream-model RUN2]`: whether every door gives one transcript (issue 34's table).

Builds a long recording of the first LONG_UTTERANCES test utterances of the demo corpus (data/test.jsonl) joined
with PAUSE_SECONDS of digital silence, and reports its CER through asr-transcribe (a subprocess, as a user runs
it, files mode and --stream), Recognizer.transcribe(path), Recognizer.transcribe(waveform),
Recognizer.transcribe(bytes), a StreamSession fed STREAM_CHUNK_MS chunks and LiteModel.transcribe (a .tflite
exported into a temporary folder), against the utterances transcribed file by file; with a streaming model, the
WER of the same file streamed against its whole-file WER, and the compute of its step-by-step model (Stream: the
features and CTCModel.step_function) per STREAM_CHUNK_MS chunk; and the words that come out of SILENCE_SECONDS of
digital zeros and of white noise at NOISE_DBFS through every door.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from asr.system import SOURCE_ROOT

log = logging.getLogger(__name__)

# The recording: 30 demo test utterances joined with 0.6 s pauses.
LONG_UTTERANCES = 30
PAUSE_SECONDS = 0.6
MANIFEST = SOURCE_ROOT / "data" / "test.jsonl"
# Chunks of a stream, as asr-transcribe --stream feeds a file.
STREAM_CHUNK_MS = 200
# The silent recordings: 5 s of digital zeros, and of white noise at -60 dBFS (seeded).
SILENCE_SECONDS = 5.0
NOISE_DBFS = -60.0
NOISE_SEED = 0


def long_recording(folder: Path, manifest: Path = MANIFEST, count: int = LONG_UTTERANCES) -> dict:
    """Write `long.wav` into `folder`: the first `count` utterances of `manifest` joined with PAUSE_SECONDS of
    zeros (at the first file's rate). Returns its path, the utterances' paths and their references."""
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()[:count]]
    files = [manifest.parent / row["audio"] for row in rows]
    parts, rate = [], None
    for path in files:
        samples, file_rate = soundfile.read(path, dtype="float32")
        rate = rate or file_rate
        if file_rate != rate:
            raise ValueError(f"{path}: {file_rate} Hz, the others {rate} Hz")
        parts += [samples, np.zeros(int(PAUSE_SECONDS * rate), np.float32)]
    path = folder / "long.wav"
    soundfile.write(path, np.concatenate(parts[:-1]), rate, subtype="FLOAT")
    return {"path": path, "files": [str(f) for f in files], "refs": [row["text"] for row in rows], "rate": rate}


def silent_recordings(folder: Path, rate: int) -> dict[str, Path]:
    """5 s of zeros and 5 s of white noise at NOISE_DBFS, as 16-bit WAV files at `rate`."""
    noise = np.random.default_rng(NOISE_SEED).standard_normal(int(SILENCE_SECONDS * rate)) * 10 ** (NOISE_DBFS / 20)
    found = {}
    for name, samples in (("zeros", np.zeros(int(SILENCE_SECONDS * rate))), ("noise_-60dBFS", noise)):
        found[name] = folder / f"{name}.wav"
        soundfile.write(found[name], samples.astype(np.float32), rate, subtype="PCM_16")
    return found


def cli_transcript(model: Path, audio: Path, *extra: str) -> dict:
    """asr-transcribe's JSON record of one file, run as a user runs it (a fresh process)."""
    command = [sys.executable, "-m", "asr.cli.transcribe", str(model), str(audio), "--json", *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def streamed(recognizer, samples: np.ndarray, chunk_ms: int = STREAM_CHUNK_MS):
    """The transcript of samples at the recognizer's rate fed to a StreamSession in chunks of `chunk_ms`."""
    session = recognizer.stream()
    chunk = recognizer.sample_rate * chunk_ms // 1000
    for begin in range(0, len(samples), chunk):
        session.accept(samples[begin : begin + chunk])
    return session.finish()


def lite_model(recognizer, folder: Path):
    """A LiteModel of the recognizer's bundle, exported into `folder` (float32)."""
    from asr.inference.lite import LiteModel
    from asr.inference.tflite import export_tflite

    out = export_tflite(recognizer.bundle, folder / "model.tflite")
    return LiteModel(out)


def doors(recognizer, lite, path: Path, model: Path) -> dict[str, str]:
    """The transcript of one file through every door."""
    from asr.data.audio import load_audio

    waveform = load_audio(path, recognizer.sample_rate)
    return {
        "asr_transcribe": cli_transcript(model, path)["text"],
        "asr_transcribe_stream": cli_transcript(model, path, "--stream")["text"],
        "transcribe_path": recognizer.transcribe(path).text,
        "transcribe_waveform": recognizer.transcribe(waveform, sample_rate=recognizer.sample_rate).text,
        "transcribe_bytes": recognizer.transcribe(path.read_bytes()).text,
        "stream": streamed(recognizer, waveform).text,
        "lite": lite.transcribe(waveform, recognizer.sample_rate).text,
    }


def bench_recognizer(model: Path, stream_model: Path | None = None) -> dict:
    """The figures of issue 34's table for `model` (and `stream_model`)."""
    import asr
    from asr.data.text import error_rates

    recognizer = asr.load(model)
    result: dict = {"benchmark": "recognizer", "model": str(model), "utterances": LONG_UTTERANCES}
    with tempfile.TemporaryDirectory(prefix="asr-bench-recognizer-") as work:
        folder = Path(work)
        long = long_recording(folder)
        ref = " ".join(recognizer.bundle.vocab.normalize(r) for r in long["refs"])
        started = time.perf_counter()
        alone = " ".join(t.text for t in recognizer.transcribe_many(long["files"]))
        result["file_by_file"] = {"cer": error_rates([ref], [alone])["ler"], "seconds": time.perf_counter() - started}
        lite = lite_model(recognizer, folder)
        texts = doors(recognizer, lite, long["path"], model)
        result["long_recording"] = {
            "seconds": round(soundfile.info(long["path"]).duration, 3),
            "cer": {door: round(error_rates([ref], [text])["ler"], 5) for door, text in texts.items()},
            "wer": {door: round(error_rates([ref], [text])["wer"], 5) for door, text in texts.items()},
        }
        result["silence"] = {
            name: {door: len(text.split()) for door, text in doors(recognizer, lite, path, model).items()}
            for name, path in silent_recordings(folder, long["rate"]).items()
        }
        if stream_model is not None:
            result["stream"] = stream_figures(asr.load(stream_model), long, ref)
            result["stream"]["model"] = str(stream_model)
    result["file_by_file"]["cer"] = round(result["file_by_file"]["cer"], 5)
    result["file_by_file"]["seconds"] = round(result["file_by_file"]["seconds"], 3)
    return result


def stream_figures(recognizer, long: dict, ref: str) -> dict:
    """WER and CER of the long recording streamed in STREAM_CHUNK_MS chunks and transcribed whole by a (streaming)
    model, and of its utterances transcribed file by file."""
    from asr.data.audio import load_audio
    from asr.data.text import error_rates

    samples = load_audio(long["path"], recognizer.sample_rate)
    compute = step_compute(recognizer, samples)  # first: its Stream traces the step function
    whole = recognizer.transcribe(long["path"]).text
    stream = streamed(recognizer, samples).text
    alone = " ".join(t.text for t in recognizer.transcribe_many(long["files"]))
    rates = {
        "whole_file": error_rates([ref], [whole]),
        "stream": error_rates([ref], [stream]),
        "file_by_file": error_rates([ref], [alone]),
    }
    figures = {name: {"wer": round(r["wer"], 5), "cer": round(r["ler"], 5)} for name, r in rates.items()}
    figures["step_by_step"] = compute
    return figures


def step_compute(recognizer, samples: np.ndarray, chunk_ms: int = STREAM_CHUNK_MS) -> dict | None:
    """Milliseconds of compute per chunk (median and 95th percentile) of the step-by-step model (Stream: features
    and CTCModel.step_function, no decoding of closed segments) fed `samples` in chunks of `chunk_ms`, and the
    seconds a Stream took to start (the model's first: its step function traced); None for a model that cannot
    stream."""
    from asr.inference.stream import Stream, streamable

    if not streamable(recognizer.bundle):
        return None
    started = time.perf_counter()
    stream = Stream(recognizer.bundle)
    start_seconds = time.perf_counter() - started
    chunk, times = recognizer.sample_rate * chunk_ms // 1000, []
    for begin in range(0, len(samples), chunk):
        started = time.perf_counter()
        stream.feed(samples[begin : begin + chunk])
        times.append(time.perf_counter() - started)
    stream.finish()
    ms = np.array(times) * 1000
    return {
        "chunk_ms": chunk_ms,
        "chunks": len(times),
        "ms_median": round(float(np.median(ms)), 2),
        "ms_p95": round(float(np.percentile(ms, 95)), 2),
        "start_seconds": round(start_seconds, 3),
    }
