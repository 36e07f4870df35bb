"""What every route shares: the server's state (the loaded Recognizer, its options, the decoding threads, the
open streams) and the API key check of HTTP requests and WebSocket connections."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from starlette.websockets import WebSocket

from asr.serve.errors import AUTHENTICATION, ApiError
from asr.serve.options import ServeOptions

log = logging.getLogger(__name__)

T = TypeVar("T")
# The WebSocket subprotocol the page offers beside its key (browsers cannot set an Authorization header on a
# WebSocket): `new WebSocket(url, ["vosk", "bearer." + key])`; the server answers with "vosk".
SUBPROTOCOL = "vosk"
BEARER_SUBPROTOCOL = "bearer."
KEY_QUERY = "api_key"  # ws://host/ws?api_key=KEY (appears in access logs: prefer the subprotocol)


@dataclass
class ServerState:
    """The loaded recognizer and what the routes share: `decoder` runs whole-file decodes (--workers threads),
    `streamer` runs stream chunks (a thread per allowed stream, so that a long upload never stalls a live
    stream); `streams` counts open WebSocket streams, `decoding` the uploads being decoded."""

    recognizer: Any
    options: ServeOptions
    decoder: ThreadPoolExecutor = field(init=False)
    streamer: ThreadPoolExecutor = field(init=False)
    streams: int = 0
    decoding: int = 0

    def __post_init__(self) -> None:
        self.decoder = ThreadPoolExecutor(self.options.workers, thread_name_prefix="asr-decode")
        self.streamer = ThreadPoolExecutor(max(self.options.max_streams, 1), thread_name_prefix="asr-stream")

    async def decode(self, work: Callable[..., T], *args: Any) -> T:
        """work(*args) on a decoding thread, the event loop free meanwhile (so /health and streams answer)."""
        self.decoding += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.decoder, work, *args)
        finally:
            self.decoding -= 1

    async def stream_step(self, work: Callable[..., T], *args: Any) -> T:
        """work(*args) on a stream thread (a chunk of a live stream)."""
        return await asyncio.get_running_loop().run_in_executor(self.streamer, work, *args)

    def close(self) -> None:
        """Stop the threads (running work finishes first)."""
        self.decoder.shutdown(wait=True, cancel_futures=True)
        self.streamer.shutdown(wait=True, cancel_futures=True)


def server(request: Request) -> ServerState:
    """The server's state (a dependency of every route)."""
    return request.app.state.server


def _matches(given: str | None, key: str) -> bool:
    """Whether the given key is the server's (compared in constant time)."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8"))


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def require_key(request: Request) -> None:
    """A dependency: ApiError 401 unless the server has no key or the request sends it as `Authorization:
    Bearer KEY`."""
    key = request.app.state.server.options.api_key
    if key is None:
        return
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise ApiError(
            401,
            "this server needs an API key: send the header `Authorization: Bearer KEY`",
            AUTHENTICATION,
            code="missing_api_key",
        )
    if not _matches(token, key):
        raise ApiError(401, "wrong API key (the Authorization: Bearer header)", AUTHENTICATION, code="invalid_api_key")


def websocket_key_ok(websocket: WebSocket, key: str | None) -> bool:
    """Whether a WebSocket connection may stream: no key set, or the key as `Authorization: Bearer KEY`, as
    the subprotocol `bearer.KEY`, or as the query parameter `api_key=KEY`."""
    if key is None:
        return True
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    candidates = [bearer(websocket.headers.get("authorization")), websocket.query_params.get(KEY_QUERY)]
    candidates += [p.removeprefix(BEARER_SUBPROTOCOL) for p in offered if p.startswith(BEARER_SUBPROTOCOL)]
    return any(_matches(c, key) for c in candidates)


def chosen_subprotocol(websocket: WebSocket) -> str | None:
    """The subprotocol to answer with: "vosk" when offered (a browser offering subprotocols fails the
    connection when the server answers none), else a `bearer.` one when that is all that was offered, else
    None."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return offered[0] if offered else None
