"""The HTTP routes: OpenAI's `POST /v1/audio/transcriptions`, `GET /v1/models` (and one model), `GET /health`."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.types import Message

from asr.data.audio import AudioError, audio_info
from asr.errors import UserError
from asr.serve import formats
from asr.serve.deps import ServerState, require_key, server
from asr.serve.errors import ApiError
from asr.serve.options import BYTES_PER_MB, MAX_BEAM_WIDTH, hotwords_problem

log = logging.getLogger(__name__)

# The form of /v1/audio/transcriptions: a file and a handful of short text fields (OpenAI's, plus lm and
# beam_width); longer fields or more of them are refused before anything is decoded.
MAX_FORM_FIELDS = 32
MAX_FIELD_BYTES = 64 * 1024
PROMPT_SEPARATORS = re.compile(r"[,;\n]")  # a prompt is read as a list of hotwords: "Anna, Bob; Ximena"
TEMPERATURE_RANGE = (0.0, 1.0)  # OpenAI's range; decoding here draws nothing at random, so it is not used
REMOTE_LMS = ("bundle", "none")  # a client may drop the bundle's LM, not name a file on the server
AUDIO_FIX = "send a WAV, FLAC, OGG Vorbis, Opus or MP3 recording"
UPLOAD_PREFIX = "asr-serve-"  # the temporary copy of an upload, removed once decoded

router = APIRouter()
State = Annotated[ServerState, Depends(server)]


@router.get("/health")
async def health(state: State) -> dict:
    """Liveness without a key: the model's name, streams open and uploads decoding or waiting."""
    return {
        "status": "ok",
        "model": state.recognizer.name,
        "streams": state.streams,
        "max_streams": state.options.max_streams,
        "decoding": state.decoding,
    }


def model_card(state: ServerState) -> dict:
    """One model as /v1/models lists it: OpenAI's id, object, created, owned_by; the bundle's facts
    (Recognizer.info(): sample_rate, vocabulary, max_seconds of its training utterances, has_lm, streamable...);
    the server's limits."""
    info = dict(state.recognizer.info())
    path = Path(str(info.get("path", "")))
    created = int(path.stat().st_mtime) if path.exists() else 0
    return (
        {"id": state.recognizer.name, "object": "model", "created": created, "owned_by": "asr"}
        | info
        | {
            "path": path.name,  # the folder's name only: the server's layout stays private
            "max_upload_mb": state.options.max_mb,
            "max_upload_seconds": state.options.max_seconds,
        }
    )


@router.get("/v1/models", dependencies=[Depends(require_key)])
async def models(state: State) -> dict:
    """The served model (one), as OpenAI's model list."""
    return {"object": "list", "data": [model_card(state)]}


@router.get("/v1/models/{model_id}", dependencies=[Depends(require_key)])
async def model(model_id: str, state: State) -> dict:
    """The served model by its id; 404 for another."""
    if model_id != state.recognizer.name:
        raise ApiError(404, f"model {model_id!r} is not served here; this server serves {state.recognizer.name!r}")
    return model_card(state)


def limited_request(request: Request, max_bytes: int) -> Request:
    """The request with its body counted as it arrives: ApiError 413 once it exceeds max_bytes (also when the
    client sends no Content-Length, or a false one)."""
    received = 0
    receive = request.receive

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise too_large(received, max_bytes, more=True)
        return message

    return Request(request.scope, counted)


def too_large(size: int, max_bytes: int, more: bool = False) -> ApiError:
    """413 for an upload of `size` bytes (at least, with `more`) over the limit."""
    at_least = "over " if more else ""
    return ApiError(
        413,
        f"the upload is {at_least}{size / BYTES_PER_MB:.1f} MB, over this server's limit of "
        f"{max_bytes / BYTES_PER_MB:g} MB (asr-serve --max-mb); send a shorter or compressed recording "
        "(FLAC, Opus)",
        param="file",
        code="file_too_large",
    )


def text_field(form: FormData, name: str, default: str | None = None) -> str | None:
    """A text field of the form (400 when a file was sent in its place)."""
    value = form.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(400, f"{name}: expected a text field, got a file", param=name)
    return value


def choice(form: FormData, name: str, allowed: tuple[str, ...], default: str) -> str:
    """A text field that must be one of `allowed`."""
    value = text_field(form, name, default) or default
    if value not in allowed:
        raise ApiError(400, f"{name}: {value!r} is not one of {', '.join(allowed)}", param=name)
    return value


def number(form: FormData, name: str, kind: type, low: float, high: float, default: float) -> Any:
    """A numeric text field within [low, high]."""
    text = text_field(form, name)
    if text is None or not text.strip():
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ApiError(400, f"{name}: {text!r} is not a {kind.__name__}", param=name) from None
    if not low <= value <= high:
        raise ApiError(400, f"{name}: {value} is outside {low:g}-{high:g}", param=name)
    return value


def hotwords_of(prompt: str | None) -> list[str] | None:
    """The hotwords of an OpenAI `prompt`: its comma-, semicolon- or line-separated phrases (None: no prompt)."""
    if prompt is None or not prompt.strip():
        return None
    phrases = [" ".join(p.split()) for p in PROMPT_SEPARATORS.split(prompt)]
    return check_hotwords([p for p in phrases if p], "prompt")


def check_hotwords(phrases: list[str], param: str) -> list[str]:
    """The phrases, or ApiError 400 when there are too many or one is too long."""
    problem = hotwords_problem(phrases)
    if problem:
        raise ApiError(400, f"{param}: {problem}", param=param)
    return phrases


def granularities_of(form: FormData, response_format: str) -> list[str]:
    """`timestamp_granularities[]` (or without the brackets): segment and/or word, with verbose_json only (as
    OpenAI's API)."""
    given = [*form.getlist("timestamp_granularities[]"), *form.getlist("timestamp_granularities")]
    for value in given:
        if value not in formats.GRANULARITIES:
            raise ApiError(
                400,
                f"timestamp_granularities[]: {value!r} is not one of {', '.join(formats.GRANULARITIES)}",
                param="timestamp_granularities[]",
            )
    if given and response_format != "verbose_json":
        raise ApiError(
            400,
            "timestamp_granularities[] needs response_format=verbose_json",
            param="timestamp_granularities[]",
        )
    return list(dict.fromkeys(given)) or ["segment"]


def save_upload(source: IO[bytes], filename: str) -> str:
    """A named temporary copy of an upload (the file's own suffix kept, so libsndfile sees what it is)."""
    suffix = Path(filename).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""
    descriptor, path = tempfile.mkstemp(prefix=UPLOAD_PREFIX, suffix=suffix)
    try:
        with os.fdopen(descriptor, "wb") as out:
            shutil.copyfileobj(source, out)
    except BaseException:
        os.unlink(path)
        raise
    return path


def transcribe_upload(
    recognizer: Any, source: IO[bytes], filename: str, max_seconds: float, beam_width: int, timestamps: bool
) -> Any:
    """The Transcript of an uploaded file (on a decoding thread): copied to a temporary file, removed whatever
    happens; 400 for audio that cannot be read, with the reason; 413 for a recording over max_seconds (from its
    header, before it is decoded)."""
    path = save_upload(source, filename)
    try:
        try:
            info = audio_info(path)
            if info.seconds > max_seconds:
                raise ApiError(
                    413,
                    f"file {filename!r}: {info.seconds:.1f} s of audio, over this server's limit of {max_seconds:g} s "
                    "(asr-serve --max-seconds); cut the recording, or stream it over the WebSocket",
                    param="file",
                    code="audio_too_long",
                )
            try:
                return recognizer.transcribe(path, beam_width=beam_width, timestamps=timestamps)
            except ValueError as error:  # a choice the recognizer refuses, e.g. hotwords with beam_width 1
                raise ApiError(400, f"beam_width {beam_width}: {error}", param="beam_width") from error
        except AudioError as error:
            message = f"file {filename!r}: {error.reason}; {AUDIO_FIX}"
            raise ApiError(400, message, param="file", code="bad_audio") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# The form as OpenAPI describes it (the route reads it itself, after the key and the size are checked).
FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string", "description": "any: the server serves one model"},
                        "language": {"type": "string", "description": "echoed in verbose_json"},
                        "prompt": {"type": "string", "description": "hotwords, separated by , ; or lines"},
                        "response_format": {"type": "string", "enum": list(formats.RESPONSE_FORMATS)},
                        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                        "timestamp_granularities[]": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(formats.GRANULARITIES)},
                        },
                        "lm": {"type": "string", "enum": list(REMOTE_LMS)},
                        "beam_width": {"type": "integer", "minimum": 0, "maximum": MAX_BEAM_WIDTH},
                    },
                }
            }
        },
    }
}


@router.post("/v1/audio/transcriptions", dependencies=[Depends(require_key)], openapi_extra=FORM_SCHEMA)
async def transcriptions(request: Request, state: State) -> Response:
    """OpenAI's transcription endpoint (multipart/form-data): `file`; `model` (any name: one model is served);
    `language` (echoed in verbose_json); `prompt` (hotwords: phrases separated by commas, semicolons or lines);
    `response_format` json | text | srt | vtt | verbose_json; `temperature` (0-1, unused: decoding is
    deterministic); `timestamp_granularities[]` segment | word (verbose_json); and this server's `lm`
    (bundle | none; default: the server's --lm) and `beam_width` (0: the server's default search)."""
    limit = state.options.max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(400, f"expected multipart/form-data with a `file` field, got {content_type or 'no body'!r}")
    form = await limited_request(request, limit).form(
        max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
    )
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "file: required, the recording as a multipart file field", param="file")
        response_format = choice(form, "response_format", formats.RESPONSE_FORMATS, "json")
        granularities = granularities_of(form, response_format)
        number(form, "temperature", float, *TEMPERATURE_RANGE, default=0.0)
        beam_width = number(form, "beam_width", int, 0, MAX_BEAM_WIDTH, default=0)
        lm = text_field(form, "lm") or None
        if lm is not None and lm not in REMOTE_LMS:
            raise ApiError(400, f"lm: {lm!r} is not one of {', '.join(REMOTE_LMS)}", param="lm")
        hotwords = hotwords_of(text_field(form, "prompt"))
        language = text_field(form, "language") or str(state.recognizer.info().get("language") or "unknown")
        recognizer = with_request_options(state.recognizer, lm, hotwords)
        words = formats.needs_words(response_format, granularities)
        filename = upload.filename or "upload"
        try:
            transcript = await state.decode(
                transcribe_upload, recognizer, upload.file, filename, state.options.max_seconds, beam_width, words
            )
        except UserError as error:
            raise ApiError(400, str(error)) from error
    finally:
        await form.close()
    log.info("%s: %.1f s of audio, %d characters", filename, transcript.duration, len(transcript.text))
    return render(transcript, response_format, language, granularities)


def with_request_options(recognizer: Any, lm: str | None, hotwords: list[str] | None) -> Any:
    """The recognizer with a request's language model choice (None: the server's) and hotwords (None: the
    server's; given, they replace those of --hotwords); the server's own when the request changes neither."""
    changes: dict[str, Any] = {}
    if lm is not None:
        changes["lm"] = lm
    if hotwords is not None:
        changes["hotwords"] = hotwords
    if not changes:
        return recognizer
    try:
        return recognizer.with_options(**changes)
    except UserError as error:
        raise ApiError(400, str(error), param="prompt" if hotwords is not None else "lm") from error


def render(transcript: Any, response_format: str, language: str, granularities: list[str]) -> Response:
    """The transcript in the asked format, with its media type."""
    media_type = formats.MEDIA_TYPES[response_format]
    if response_format == "json":
        return JSONResponse(formats.as_json(transcript))
    if response_format == "verbose_json":
        return JSONResponse(formats.as_verbose_json(transcript, language, granularities))
    text = {"text": formats.as_text, "srt": formats.as_srt, "vtt": formats.as_vtt}[response_format](transcript)
    return PlainTextResponse(text, media_type=media_type)
