"""`/ws`: Vosk-server's WebSocket protocol over a Recognizer's stream.

A text frame `{"config": {"sample_rate": 16000, "phrase_list": [...], "words": true, "lm": "none"}}` (optional,
before the audio), then binary frames of 16-bit little-endian mono PCM; each is answered with one message:
`{"partial": "..."}`, or `{"result": [{"conf", "start", "end", "word"}], "text": "..."}` when a segment closed
at a pause. `{"eof": 1}` gets the last result, then the server closes (1000); `{"reset": 1}` gets the result so
far and starts afresh. Close codes: CLOSE_CODES below.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from asr.errors import UserError
from asr.inference.results import Segment, joined_text
from asr.serve.deps import ServerState, chosen_subprotocol, websocket_key_ok
from asr.serve.options import hotwords_problem

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000  # after {"eof": 1}
CLOSE_UNSUPPORTED = 1003  # a text frame that is not a JSON command
CLOSE_INVALID = 1007  # a config with an unknown key or a bad value, or one sent after the audio began
CLOSE_TOO_LONG = 1009  # the stream went past --max-seconds (its last result was sent first)
CLOSE_SERVER_ERROR = 1011  # the model cannot stream, or a bug (the server's log has it)
CLOSE_BUSY = 1013  # --max-streams streams are open: try again later
CLOSE_UNAUTHORIZED = 4401  # no or a wrong API key (HTTP's 401 in the private range 4000-4999)
CLOSE_IDLE = 4408  # nothing received for --idle-seconds (HTTP's 408)
CLOSE_CODES = {
    CLOSE_NORMAL: "end of stream",
    CLOSE_UNSUPPORTED: "unsupported frame",
    CLOSE_INVALID: "invalid config",
    CLOSE_TOO_LONG: "stream too long",
    CLOSE_SERVER_ERROR: "server error",
    CLOSE_BUSY: "too many streams",
    CLOSE_UNAUTHORIZED: "API key missing or wrong",
    CLOSE_IDLE: "idle",
}
MAX_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code
SAMPLE_RATES = (8000, 192000)  # the rates a stream may declare
PCM_BYTES = 2  # 16-bit samples
TIME_DIGITS = 3
CONFIDENCE_DIGITS = 4
CONFIG_KEYS = ("sample_rate", "phrase_list", "words", "lm")

router = APIRouter()


class StreamClosed(Exception):
    """The stream must close with `code` and `reason` (sent by the handler)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class StreamConfig:
    """What the config frame set."""

    sample_rate: int | None = None  # None: the model's rate
    phrase_list: list[str] | None = None  # hotwords (None: the server's)
    words: bool = True  # results carry their words with times and confidences
    lm: str | None = None  # "bundle" or "none" (None: the server's)


def parse_config(config: Any) -> StreamConfig:
    """The config frame's object, checked: StreamClosed(1007) naming the key and the fix."""
    if not isinstance(config, dict):
        raise StreamClosed(CLOSE_INVALID, 'config must be an object, e.g. {"sample_rate": 16000}')
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise StreamClosed(CLOSE_INVALID, f"config: unknown key {unknown[0]!r}; known: {', '.join(CONFIG_KEYS)}")
    parsed = StreamConfig()
    if "sample_rate" in config:
        rate = config["sample_rate"]
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate != int(rate):
            raise StreamClosed(CLOSE_INVALID, f"config: sample_rate must be a whole number, got {rate!r}")
        if not SAMPLE_RATES[0] <= rate <= SAMPLE_RATES[1]:
            low, high = SAMPLE_RATES
            raise StreamClosed(CLOSE_INVALID, f"config: sample_rate {rate} is outside {low}-{high}")
        parsed.sample_rate = int(rate)
    if "phrase_list" in config:
        phrases = config["phrase_list"]
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            raise StreamClosed(CLOSE_INVALID, "config: phrase_list must be a list of strings")
        phrases = [" ".join(p.split()) for p in phrases if p.strip()]
        problem = hotwords_problem(phrases)
        if problem:
            raise StreamClosed(CLOSE_INVALID, f"config: phrase_list: {problem}")
        parsed.phrase_list = phrases
    if "words" in config:
        if not isinstance(config["words"], bool):
            raise StreamClosed(CLOSE_INVALID, "config: words must be true or false")
        parsed.words = config["words"]
    if "lm" in config:
        if config["lm"] not in ("bundle", "none"):
            raise StreamClosed(CLOSE_INVALID, "config: lm must be bundle or none")
        parsed.lm = config["lm"]
    return parsed


def vosk_result(segments: tuple[Segment, ...], words: bool) -> dict:
    """Vosk's result message of closed segments: their words (when asked and there are some), their text."""
    record: dict = {}
    found = [w for s in segments for w in s.words]
    if words and found:
        record["result"] = [
            {
                "conf": round(w.confidence, CONFIDENCE_DIGITS),
                "end": round(w.end, TIME_DIGITS),
                "start": round(w.start, TIME_DIGITS),
                "word": w.word,
            }
            for w in found
        ]
    record["text"] = joined_text(segments)
    return record


def short_reason(reason: str) -> str:
    """The reason cut to fit a close frame (UTF-8 safe)."""
    data = reason.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return reason
    return data[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


class StreamHandler:
    """One WebSocket stream: the config, the audio frames and their answers, the end."""

    def __init__(self, websocket: WebSocket, state: ServerState) -> None:
        self.websocket = websocket
        self.state = state
        self.config = StreamConfig()
        self.session: Any = None
        self.rate = 0
        self.odd = b""  # a frame's last byte when it held an odd number of bytes (half a sample)
        self.samples = 0  # samples received
        self.sent = 0  # segments sent in results so far

    async def run(self) -> None:
        """Answer frames until {"eof": 1}, a disconnect, an idle timeout or a limit."""
        while True:
            try:
                message = await asyncio.wait_for(self.websocket.receive(), self.state.options.idle_seconds)
            except TimeoutError:
                raise StreamClosed(
                    CLOSE_IDLE, f"nothing received for {self.state.options.idle_seconds:g} s (asr-serve --idle-seconds)"
                ) from None
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self.audio(message["bytes"])
            elif message.get("text") is not None and await self.command(message["text"]):
                return

    async def command(self, text: str) -> bool:
        """A text frame: config, eof or reset; True when the stream is over."""
        try:
            command = json.loads(text)
        except json.JSONDecodeError:
            raise StreamClosed(CLOSE_UNSUPPORTED, "text frames must be JSON: config, eof or reset") from None
        if isinstance(command, dict) and "config" in command:
            if self.session is not None:
                raise StreamClosed(CLOSE_INVALID, "config must come before the audio")
            self.config = parse_config(command["config"])
            return False
        if isinstance(command, dict) and command.get("eof") == 1:
            await self.finish()
            await self.websocket.close(CLOSE_NORMAL)
            return True
        if isinstance(command, dict) and command.get("reset") == 1:
            await self.finish()
            self.session, self.sent = None, 0
            return False
        raise StreamClosed(CLOSE_UNSUPPORTED, 'unknown command; send {"config": {...}}, {"eof": 1} or {"reset": 1}')

    async def open_session(self) -> None:
        """The recognizer's stream with the config's options (at the first audio frame)."""
        recognizer = self.state.recognizer
        changes: dict[str, Any] = {}
        if self.config.lm is not None:
            changes["lm"] = self.config.lm
        if self.config.phrase_list is not None:
            changes["hotwords"] = self.config.phrase_list
        try:
            if changes:
                recognizer = recognizer.with_options(**changes)
            self.session = await self.state.stream_step(recognizer.stream, self.config.sample_rate)
        except UserError as error:
            raise StreamClosed(CLOSE_SERVER_ERROR if not changes else CLOSE_INVALID, str(error)) from error
        self.rate = self.config.sample_rate or recognizer.sample_rate

    async def audio(self, data: bytes) -> None:
        """A binary frame: PCM into the stream, its answer out."""
        if self.session is None:
            await self.open_session()
        data = self.odd + data
        whole = len(data) - len(data) % PCM_BYTES
        pcm, self.odd = data[:whole], data[whole:]
        self.samples += whole // PCM_BYTES
        update = await self.state.stream_step(self.session.accept, pcm)
        if update.closed:
            self.sent += len(update.closed)
            await self.websocket.send_json(vosk_result(update.closed, self.config.words))
        else:
            await self.websocket.send_json({"partial": update.partial})
        if self.samples > self.state.options.max_seconds * self.rate:
            await self.finish()
            raise StreamClosed(
                CLOSE_TOO_LONG,
                f"the stream passed this server's limit of {self.state.options.max_seconds:g} s (--max-seconds)",
            )

    async def finish(self) -> None:
        """The last result: the segments of the stream's transcript not sent yet."""
        if self.session is None:
            await self.websocket.send_json({"text": ""})
            return
        transcript = await self.state.stream_step(self.session.finish)
        rest = tuple(transcript.segments[self.sent :])
        self.sent = len(transcript.segments)
        await self.websocket.send_json(vosk_result(rest, self.config.words))


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with a code and reason unless the client already left."""
    if WebSocketState.DISCONNECTED in (websocket.client_state, websocket.application_state):
        return
    try:
        await websocket.close(code, short_reason(reason))
    except (WebSocketDisconnect, OSError, RuntimeError) as error:  # the client left meanwhile
        log.debug("close %d not sent: %s", code, error)


@router.websocket("/ws")
async def stream(websocket: WebSocket) -> None:
    """A Vosk-protocol stream (see the module's docstring): the key checked, the stream limit kept."""
    state: ServerState = websocket.app.state.server
    await websocket.accept(subprotocol=chosen_subprotocol(websocket))
    if not websocket_key_ok(websocket, state.options.api_key):
        await close(
            websocket,
            CLOSE_UNAUTHORIZED,
            "missing or wrong API key (Authorization: Bearer, subprotocol bearer.KEY or ?api_key=)",
        )
        return
    if state.streams >= state.options.max_streams:
        await close(
            websocket,
            CLOSE_BUSY,
            f"{state.streams} streams open, this server's limit "
            f"(--max-streams {state.options.max_streams}); try again later",
        )
        return
    state.streams += 1
    handler = StreamHandler(websocket, state)
    try:
        await handler.run()
    except StreamClosed as closing:
        log.info("stream closed (%d): %s", closing.code, closing.reason)
        await close(websocket, closing.code, closing.reason)
    except WebSocketDisconnect:
        log.info("a client left mid-stream after %.1f s of audio", handler.samples / max(handler.rate, 1))
    except Exception:
        log.exception("stream failed")
        await close(websocket, CLOSE_SERVER_ERROR, "internal error; the server's log has the details")
    finally:
        state.streams -= 1
