"""What asr-serve allows (no FastAPI or TensorFlow here: the command line is checked before they load)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"  # only this machine can connect unless --host says otherwise
DEFAULT_PORT = 8000  # uvicorn's and faster-whisper-server's default
API_KEY_ENV = "ASR_API_KEY"  # the key, when --api-key is not given (keeps it out of `ps` and shell history)
# One decode at a time: TensorFlow already spreads one decode over the cores (intra-op threads); on the 2-core
# machine of docs/server.md, 2 decoding threads gave no more uploads per second than 1 (within its noise).
DEFAULT_WORKERS = 1
# OpenAI's own upload limit for /v1/audio/transcriptions (25 MB), so clients written for it fit here too.
DEFAULT_MAX_MB = 25.0
# 30 minutes of audio: at 16 kHz its float32 samples alone are 115 MB (a recording is read whole when it is short
# enough, in pieces when longer: asr.inference.sources).
DEFAULT_MAX_SECONDS = 1800.0
# Streams at once: on the loaded 2-core machine of docs/server.md, 4 streams to the fillets_nl model (3 x
# BiLSTM-192 with a language model) kept up with real time and 8 did not.
DEFAULT_MAX_STREAMS = 4
# A stream that sends nothing for this long is closed (a browser tab left open, a client that died silently).
DEFAULT_IDLE_SECONDS = 30.0
# Bounds on what one request may ask of the decoder: hotwords from a prompt or phrase_list, and a beam.
MAX_HOTWORDS = 200
MAX_HOTWORD_CHARS = 100
MAX_BEAM_WIDTH = 128
BYTES_PER_MB = 1_000_000  # the MB of --max-mb: decimal, as OpenAI's 25 MB


@dataclass(frozen=True)
class ServeOptions:
    """The server's address, its API key and its limits."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS  # requests decoded at once (threads of one process sharing one model)
    api_key: str | None = None  # None: no key asked for
    max_mb: float = DEFAULT_MAX_MB  # the largest upload, MB (larger: 413)
    max_seconds: float = DEFAULT_MAX_SECONDS  # the longest recording or stream, seconds (longer: 413 / close)
    max_streams: int = DEFAULT_MAX_STREAMS  # WebSocket streams at once (a further one is closed with 1013)
    idle_seconds: float = DEFAULT_IDLE_SECONDS  # a stream silent for this long is closed

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"--port must be 0-65535 (0: any free port), got {self.port}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.max_streams < 0:
            raise ValueError(f"--max-streams must be >= 0 (0: no WebSocket streams), got {self.max_streams}")
        for name, value in (("--max-mb", self.max_mb), ("--max-seconds", self.max_seconds)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not self.idle_seconds > 0:
            raise ValueError(f"--idle-seconds must be > 0, got {self.idle_seconds}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("--api-key is empty; pass a key or leave it out (and unset ASR_API_KEY)")

    @property
    def max_bytes(self) -> int:
        """The largest upload in bytes."""
        return int(self.max_mb * BYTES_PER_MB)


def hotwords_problem(phrases: list[str]) -> str | None:
    """What is wrong with a request's hotwords (too many, one too long), or None."""
    if len(phrases) > MAX_HOTWORDS:
        return f"{len(phrases)} phrases, at most {MAX_HOTWORDS} are allowed"
    for phrase in phrases:
        if len(phrase) > MAX_HOTWORD_CHARS:
            return f"the phrase {phrase[:20]!r}... is over {MAX_HOTWORD_CHARS} characters"
    return None


def api_key_from_env(given: str | None) -> str | None:
    """The API key: --api-key if given, else $ASR_API_KEY if set and not empty, else None."""
    if given is not None:
        return given
    return os.environ.get(API_KEY_ENV) or None
