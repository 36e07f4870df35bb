"""asr-serve: one Recognizer behind an OpenAI-style HTTP API, a Vosk-style WebSocket and a page with a microphone.

    from asr.serve.app import create_app
    app = create_app(asr.load("runs/demo/..."), ServeOptions(api_key="secret"))   # a FastAPI app (ASGI)

Modules: options (the limits, checked), errors (JSON error bodies), deps (the server's state, the API key),
formats (json, text, srt, vtt, verbose_json), http (/v1/audio/transcriptions, /v1/models, /health), ws (/ws),
app (the factory: routers, the page, the decoding threads), static/ (the page: no build step, no CDN).
"""
