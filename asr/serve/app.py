"""The server as a FastAPI app: the routers, the page, the JSON errors, and the decoding threads started and
stopped with it. The model is loaded before (asr.load), once, and shared by every request and stream."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from asr import __version__
from asr.serve import errors, http, ws
from asr.serve.deps import ServerState
from asr.serve.options import ServeOptions

log = logging.getLogger(__name__)

STATIC = resources.files("asr.serve") / "static"  # the page: index.html, app.js, worklet.js, style.css


def create_app(
    recognizer: Any, options: ServeOptions | None = None, on_ready: Callable[[], None] | None = None
) -> FastAPI:
    """The app serving `recognizer` (an asr Recognizer) with `options`' key and limits: `GET /` the page (its
    files under /static; neither needs the key: they hold no data and ask for the key themselves),
    `GET /health`, `GET /v1/models`, `POST /v1/audio/transcriptions`, `WS /ws`. on_ready() is called once the
    server starts."""
    options = options or ServeOptions()
    state = ServerState(recognizer, options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "serving %s: %d decoding thread(s), at most %d stream(s)",
            recognizer.name,
            options.workers,
            options.max_streams,
        )
        if on_ready is not None:
            on_ready()
        yield
        state.close()

    app = FastAPI(
        title="asr-serve",
        version=__version__,
        summary="Speech recognition: OpenAI-style /v1/audio/transcriptions, a Vosk-style WebSocket at /ws, a page",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's /docs and /redoc load their scripts from a CDN; /openapi.json is served
        redoc_url=None,
    )
    app.state.server = state
    errors.install(app)
    app.include_router(http.router)
    app.include_router(ws.router)
    static = str(STATIC)
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(f"{static}/index.html", media_type="text/html; charset=utf-8")

    return app
