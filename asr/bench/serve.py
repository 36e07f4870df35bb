"""`asr-bench serve MODEL AUDIO...`: asr-serve measured from outside, as its clients see it.

The server runs as `asr-serve` in a child process (its memory and CPU time read from /proc). Uploads: files of
UPLOAD_SECONDS made of the given recordings (joined, cut), posted by 1, 4 and 16 concurrent clients: requests per
second, latency p50/p95. Memory: the server's resident set after 50, 500 and 1000 uploads. Streams: 1, 4 and 8
clients at once each stream a recording of joined utterances in real time (Vosk's protocol, 200 ms frames, each
sent at its time in the recording and answered before the next): the delay from the end of a segment's last
word to its result, how far the answers fall behind the audio, and the server's CPU seconds per second of audio
(how many streams one core keeps up with). The clients run on the same machine: their share of the CPU is in
the figures.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from asr.errors import UserError

log = logging.getLogger(__name__)

UPLOAD_SECONDS = 5.0  # the upload length
CLIENTS = (1, 4, 16)
STREAMS = (1, 4, 8)
REQUESTS_PER_CLIENT = 8  # uploads per client at each concurrency (the figures of 16 clients: 128 requests)
MIN_REQUESTS = 32  # and at least this many at each concurrency (one client's figures need a few dozen)
# Uploads after which the server's resident memory is read: the first few hundred fill allocator pools and
# TensorFlow's caches (docs/server.md: +9 MB from 50 to 500 with the demo model), so 1000 shows whether it goes on.
RSS_AFTER = (50, 500, 1000)
RSS_CLIENTS = 4  # clients sending the memory test's uploads
STREAM_SECONDS = 20.0  # each stream: utterances joined with STREAM_PAUSE of silence, about this long
STREAM_PAUSE = 1.0  # seconds of silence between a stream's utterances (longer than the server's segment pause)
FRAME_SECONDS = 0.2  # a stream's frames, as `asr-transcribe --stream` reads a file
# A stream keeps up when no answer comes later than this after the end of its frame's audio: captions within
# a second of the words (a slower server's lag grows with every frame instead).
KEEP_UP_SECONDS = 1.0
WARM_UP_REQUESTS = 3
STARTUP_TIMEOUT = 300  # seconds the server may take to load (TensorFlow's import, the model)
PCM_SCALE = 32767


def _percentile(values: Sequence[float], share: float) -> float:
    """The share-th percentile (nearest rank) of values, rounded to ms."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(np.ceil(share * len(ordered))) - 1))], 3)


def _figures(values: Sequence[float]) -> dict:
    """p50, p95 and max of a list of seconds."""
    return {"p50": _percentile(values, 0.5), "p95": _percentile(values, 0.95), "max": round(max(values), 3)}


class Server:
    """`asr-serve MODEL --port 0 ...` in a child process: its URL, its memory and CPU time."""

    def __init__(self, model: Path, arguments: Sequence[str]) -> None:
        command = [sys.executable, "-m", "asr.cli.serve", str(model), "--port", "0", "--log-level", "warning"]
        started = time.perf_counter()
        self.process = subprocess.Popen([*command, *arguments], stdout=subprocess.PIPE, text=True)
        found = re.compile(r"asr-serve: serving .* at http://([\d.]+):(\d+)/")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            line = self.process.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                raise UserError(f"asr-serve {model} did not start (exit status {self.process.poll()}): see above")
            match = found.search(line)
            if match:
                break
        self.host, self.port = match.group(1), int(match.group(2))
        self.startup_seconds = round(time.perf_counter() - started, 2)

    def model_card(self) -> dict:
        """The served model as GET /v1/models describes it."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request("GET", "/v1/models")
            return json.loads(connection.getresponse().read())["data"][0]
        finally:
            connection.close()

    def rss_mb(self) -> float:
        """The server's resident memory now, MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        raise RuntimeError("no VmRSS in /proc")

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM, then wait (the server finishes what it has)."""
        self.process.terminate()
        self.process.wait(60)


def multipart(data: bytes, filename: str, fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body with a file and text fields, and its content type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
    parts.append(head.encode() + b"Content-Type: audio/wav\r\n\r\n" + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload(server: Server, body: bytes, content_type: str) -> tuple[float, str]:
    """POST one upload; its latency in seconds and its text (an error for any status but 200)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(server.host, server.port, timeout=600)
    try:
        connection.request("POST", "/v1/audio/transcriptions", body, {"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"upload answered {response.status}: {payload[:300]!r}")
    return time.perf_counter() - started, json.loads(payload)["text"]


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit WAV file bytes of float samples."""
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def joined(recordings: Sequence[np.ndarray], rate: int, seconds: float, pause: float, start: int) -> np.ndarray:
    """Recordings from index `start` on (cyclically) joined with `pause` s of silence until `seconds` long."""
    gap = np.zeros(int(pause * rate), np.float32)
    parts, total, k = [], 0, start
    while total < seconds * rate:
        piece = recordings[k % len(recordings)]
        parts += [piece, gap]
        total += len(piece) + len(gap)
        k += 1
    return np.concatenate(parts)


def run_clients(clients: int, work: Callable[[int], list], count: int) -> tuple[list, float]:
    """work(client) on `clients` threads, `count` times in all; the results and the wall seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(work, range(count)))
    return results, time.perf_counter() - started


def stream_one(server: Server, samples: np.ndarray, rate: int) -> dict:
    """One real-time Vosk stream: per frame the lag of its answer after its audio's end; per result the delay
    after its last word's end."""
    from websockets.sync.client import connect

    frame = int(FRAME_SECONDS * rate)
    pcm = (np.clip(samples, -1, 1) * PCM_SCALE).astype("<i2")
    lags, delays, texts = [], [], []
    with connect(f"ws://{server.host}:{server.port}/ws", max_size=None, open_timeout=60) as ws:
        ws.send(json.dumps({"config": {"sample_rate": rate, "words": True}}))
        origin = time.perf_counter()

        def answer(message: dict) -> None:
            if message.get("result"):
                delays.append(time.perf_counter() - origin - message["result"][-1]["end"])
            if message.get("text"):
                texts.append(message["text"])

        for begin in range(0, len(pcm), frame):
            end_time = min(begin + frame, len(pcm)) / rate
            wait = origin + begin / rate + FRAME_SECONDS - time.perf_counter()  # the frame's audio has "happened"
            if wait > 0:
                time.sleep(wait)
            ws.send(pcm[begin : begin + frame].tobytes())
            answer(json.loads(ws.recv()))
            lags.append(time.perf_counter() - origin - end_time)
        ws.send(json.dumps({"eof": 1}))
        answer(json.loads(ws.recv()))
    return {"lags": lags, "delays": delays, "texts": texts, "seconds": len(pcm) / rate}


def readable(items: Sequence, rate: int) -> list[np.ndarray]:
    """The recordings of manifest items at `rate`, those that cannot be read left out (with a warning)."""
    from asr.data.audio import AudioError, load_audio

    found = []
    for item in items:
        try:
            found.append(load_audio(item.audio, rate, item.start, item.end))
        except AudioError as error:
            log.warning("left out: %s", error)
    if not found:
        raise UserError("asr-bench serve: none of the AUDIO files could be read")
    return found


def upload_figures(server: Server, uploads: list, requests_per_client: int) -> dict:
    """Requests per second and latency of uploads from 1, 4 and 16 clients at once."""
    figures = {}
    for clients in CLIENTS:
        count = max(clients * requests_per_client, MIN_REQUESTS)
        cpu = server.cpu_seconds()
        results, wall = run_clients(clients, lambda k: upload(server, *uploads[k % len(uploads)]), count)
        figures[str(clients)] = {
            "requests": count,
            "requests_per_second": round(count / wall, 2),
            "audio_seconds_per_second": round(count * UPLOAD_SECONDS / wall, 1),
            "latency_seconds": _figures([seconds for seconds, _ in results]),
            "server_cpu_seconds_per_request": round((server.cpu_seconds() - cpu) / count, 3),
            "load_average": round(os.getloadavg()[0], 1),
        }
        log.info("%d clients: %s", clients, figures[str(clients)])
    return figures


def memory_figures(server: Server, uploads: list) -> dict:
    """The server's resident memory after the warm-up and after RSS_AFTER uploads."""
    memory = {"after_warm_up": server.rss_mb()}
    done = 0
    for target in RSS_AFTER:
        run_clients(RSS_CLIENTS, lambda k: upload(server, *uploads[k % len(uploads)]), target - done)
        done = target
        memory[f"after_{target}"] = server.rss_mb()
        log.info("memory after %d uploads: %.1f MB", target, memory[f"after_{target}"])
    for first, last in zip(RSS_AFTER, RSS_AFTER[1:], strict=False):
        memory[f"growth_mb_{first}_to_{last}"] = round(memory[f"after_{last}"] - memory[f"after_{first}"], 1)
    return memory


def stream_figures(server: Server, recordings: list, rate: int) -> dict:
    """1, 4 and 8 real-time streams at once: result delays, answer lags, CPU per second of audio."""
    figures = {}
    for count in STREAMS:
        signals = [joined(recordings, rate, STREAM_SECONDS, STREAM_PAUSE, 7 * k) for k in range(count)]
        cpu = server.cpu_seconds()
        results: list[dict] = [{}] * count

        def run(k: int, signals: list = signals, results: list = results) -> None:
            results[k] = stream_one(server, signals[k], rate)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cpu = server.cpu_seconds() - cpu
        audio_seconds = sum(r["seconds"] for r in results)
        lags = [lag for r in results for lag in r["lags"]]
        delays = [d for r in results for d in r["delays"]]
        figures[str(count)] = {
            "audio_seconds": round(audio_seconds, 1),
            "results": len(delays),
            "result_delay_after_last_word_seconds": _figures(delays) if delays else None,
            "answer_lag_seconds": _figures(lags),
            "keeps_up": max(lags) < KEEP_UP_SECONDS,
            "server_cpu_seconds_per_audio_second": round(cpu / audio_seconds, 4),
            "streams_per_core": round(audio_seconds / cpu, 1) if cpu else None,
            "load_average": round(os.getloadavg()[0], 1),
        }
        log.info("%d streams: %s", count, figures[str(count)])
    return figures


def bench_serve(model: Path, audio: Sequence[str], workers: Sequence[int], requests_per_client: int) -> dict:
    """With a server of the first --workers value: memory after RSS_AFTER uploads, real-time streams; then with a
    server of each value in turn (a value may repeat, to see the machine's noise): uploads at each concurrency.
    See the module."""
    from asr.inference.sources import expand_inputs

    items = expand_inputs(audio)
    if not items:
        raise UserError("asr-bench serve: no audio files in AUDIO; pass test recordings, a folder or a manifest")
    uploads_by_workers, result = [], {}
    for index, count in enumerate(workers):
        server = Server(model, ["--max-streams", str(max(STREAMS)), "--workers", str(count)])
        try:
            card = server.model_card()
            rate = int(card["sample_rate"])
            recordings = readable(items, rate)
            uploads = []
            for k in range(len(recordings)):
                samples = joined(recordings, rate, UPLOAD_SECONDS, STREAM_PAUSE / 2, k)[: int(UPLOAD_SECONDS * rate)]
                uploads.append(multipart(wav_bytes(samples, rate), f"upload{k}.wav", {"model": "any"}))
            for k in range(WARM_UP_REQUESTS):
                upload(server, *uploads[k % len(uploads)])
            log.info("server (--workers %d) up in %.1f s, %.0f MB", count, server.startup_seconds, server.rss_mb())
            if index == 0:
                result = {
                    "benchmark": "serve",
                    "model": str(model),
                    "model_facts": {k: card.get(k) for k in ("id", "sample_rate", "has_lm", "streamable", "model")},
                    "server_startup_seconds": server.startup_seconds,
                    "upload_seconds": UPLOAD_SECONDS,
                    "server_rss_mb": memory_figures(server, uploads),
                    "stream_frame_seconds": FRAME_SECONDS,
                    "keep_up_seconds": KEEP_UP_SECONDS,
                    "streams": stream_figures(server, recordings, rate),
                }
            figures = upload_figures(server, uploads, requests_per_client)
            uploads_by_workers.append({"workers": count, "clients": figures})
        finally:
            server.stop()
    return result | {"uploads_by_workers": uploads_by_workers}
