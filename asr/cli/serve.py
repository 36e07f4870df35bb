"""`asr-serve MODEL`: a transcription server on one loaded model: OpenAI's `POST /v1/audio/transcriptions`,
Vosk's WebSocket protocol at `/ws`, `GET /v1/models`, `GET /health`, and a page with a microphone at `/`."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence

from asr.cli._errors import add_debug, run_command
from asr.errors import UserError
from asr.serve.options import (
    API_KEY_ENV,
    DEFAULT_HOST,
    DEFAULT_IDLE_SECONDS,
    DEFAULT_MAX_MB,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_STREAMS,
    DEFAULT_PORT,
    DEFAULT_WORKERS,
    ServeOptions,
    api_key_from_env,
)
from asr.system import quiet_tensorflow

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1", "localhost")
# uvicorn's WebSocket implementation: websockets' sans-I/O one (its older one uses websockets' deprecated API).
WS_IMPLEMENTATION = "websockets-sansio"
# A binary WebSocket frame holds at most this many bytes: 10 s of 16 kHz 16-bit PCM is 320 kB; clients send
# 0.1-0.5 s per frame.
WS_MAX_FRAME_BYTES = 1 << 20
# Seconds uvicorn waits for open requests and streams after Ctrl-C or SIGTERM before it closes them.
GRACEFUL_SECONDS = 10
READY_LINE = "asr-serve: serving {name} at http://{host}:{port}/"  # printed (flushed) once it listens


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (a bad value exits with status 2 and the reason)."""
    parser = argparse.ArgumentParser(
        prog="asr-serve",
        description=__doc__.replace("\n", " ") + " Exit status 2 for a bad model, address or option (one line).",
    )
    parser.add_argument("model", help="training run directory, its model/ bundle, or a shipped model's name")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this "
        "machine only; 0.0.0.0: every interface, then set --api-key)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any free one, printed when ready)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="uploads decoded at once, threads "
        f"sharing the one loaded model (default {DEFAULT_WORKERS}); more wait their turn",
    )
    parser.add_argument(
        "--api-key",
        help=f"require `Authorization: Bearer KEY` on every endpoint but /health and the "
        f"page (default: ${API_KEY_ENV} if set, else no key)",
    )
    parser.add_argument(
        "--max-mb",
        type=float,
        default=DEFAULT_MAX_MB,
        help=f"largest upload in MB (default {DEFAULT_MAX_MB:g}; larger: 413)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help="longest recording or stream "
        f"in seconds (default {DEFAULT_MAX_SECONDS:g}; longer upload: 413, stream: closed with 1009)",
    )
    parser.add_argument(
        "--max-streams",
        type=int,
        default=DEFAULT_MAX_STREAMS,
        help=f"WebSocket streams at once (default {DEFAULT_MAX_STREAMS}; a further one is closed with 1013)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=DEFAULT_IDLE_SECONDS,
        help=f"close a stream that sends nothing for this long (default {DEFAULT_IDLE_SECONDS:g}; close code 4408)",
    )
    parser.add_argument(
        "--lm",
        default="bundle",
        metavar="bundle|none|FILE.arpa",
        help="language model, as asr-transcribe --lm (requests may choose bundle or none)",
    )
    parser.add_argument(
        "--hotwords",
        metavar="FILE",
        help="hotwords of every request that sends none of its own (as asr-transcribe --hotwords)",
    )
    parser.add_argument("--threads", type=int, help="TensorFlow's threads (default: its own, one per core)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="server log level (default info: one line per request)",
    )
    add_debug(parser)
    args = parser.parse_args(argv)
    try:
        args.options = ServeOptions(
            host=args.host,
            port=args.port,
            workers=args.workers,
            api_key=api_key_from_env(args.api_key),
            max_mb=args.max_mb,
            max_seconds=args.max_seconds,
            max_streams=args.max_streams,
            idle_seconds=args.idle_seconds,
        )
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-serve`: serves until Ctrl-C or SIGTERM (then finishes open requests and ends by that
    signal, as uvicorn does); exit status 2 for a user's mistake."""
    args = parse_args(argv)
    return run_command("asr-serve", lambda: serve(args), args.debug)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one); UserError when the address is taken or not local."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise UserError(f"--host {host}: unknown address ({error.strerror}); pass an IP address or host name") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({error.strerror}); choose another --port (0: any free one) or stop "
            "the program using it"
        ) from None
    sock.listen(socket.SOMAXCONN)  # connections wait in the backlog until the server accepts them
    return sock


def serve(args: argparse.Namespace) -> int:
    """Find the model, bind the address, load the model, serve until stopped."""
    from asr.models import resolve_model

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options: ServeOptions = args.options
    model = resolve_model(args.model)
    sock = listening_socket(options.host, options.port)
    try:
        if options.host not in LOOPBACK and options.api_key is None:
            log.warning(
                "listening on %s without an API key: anyone who reaches it may use it (--api-key)", options.host
            )
        quiet_tensorflow()
        import uvicorn

        import asr.inference.recognizer as recognizer_module
        from asr.serve.app import create_app

        recognizer = recognizer_module.load(model, lm=args.lm, hotwords=args.hotwords, threads=args.threads).ready()
        port = sock.getsockname()[1]
        host = f"[{options.host}]" if ":" in options.host else options.host
        ready = READY_LINE.format(name=recognizer.name, host=host, port=port)
        app = create_app(recognizer, options, on_ready=lambda: print(ready, flush=True))
        config = uvicorn.Config(
            app,
            log_level=args.log_level,
            ws=WS_IMPLEMENTATION,
            ws_max_size=WS_MAX_FRAME_BYTES,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            log_config=None,  # the logging set above
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
