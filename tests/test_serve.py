"""asr-serve through Starlette's TestClient: every response format, the key, the limits, the WebSocket protocol.

The server's mechanics (keys, limits, streams that end early, temporary files, a busy decoder) are checked with
a stand-in recognizer (no TensorFlow); what it says about real audio, with the shared demo model: the HTTP text
equals asr-transcribe's, the WebSocket's results equal asr-transcribe --stream's, the OpenAI client works."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import ROOT, sine, write_wav
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from asr.data.audio import audio_info
from asr.inference.results import Segment, Transcript, Update, Word
from asr.serve import formats
from asr.serve.app import create_app
from asr.serve.options import ServeOptions
from asr.serve.ws import (
    CLOSE_BUSY,
    CLOSE_IDLE,
    CLOSE_INVALID,
    CLOSE_NORMAL,
    CLOSE_TOO_LONG,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNSUPPORTED,
)

TEST_WAVS = sorted((ROOT / "data" / "wav" / "test").glob("*.wav"))
KEY = "s3cret-key"
URL = "/v1/audio/transcriptions"
WAIT = 60  # seconds a test waits for the server's other thread before it fails (instead of hanging)


# A stand-in recognizer: the Recognizer's interface, answers that show what reached it


class FakeSession:
    """A stream that closes a segment at every frame of zeros and reports the samples it has."""

    def __init__(self, rate: int, owner: FakeRecognizer) -> None:
        self.rate, self.owner, self.samples, self.segments = rate, owner, 0, []
        self.open_from = 0

    def accept(self, pcm: bytes) -> Update:
        count = len(pcm) // 2
        start, self.samples = self.samples, self.samples + count
        if count and not any(pcm):
            segment = Segment(self.open_from / self.rate, start / self.rate, f"upto {start}", 0.9)
            self.segments.append(segment)
            self.open_from = self.samples
            return Update("", (segment,))
        return Update(f"{self.samples} samples")

    def finish(self) -> Transcript:
        self.owner.finished += 1
        last = Segment(self.open_from / self.rate, self.samples / self.rate, f"end {self.samples}", 0.8)
        segments = (*self.segments, last)
        return Transcript(" ".join(s.text for s in segments), self.samples / self.rate, 0.8, segments)


class FakeRecognizer:
    """Transcribes a file as "<n> frames" (from its header), one word per 0.5 s; records what it was given."""

    name = "fake"
    sample_rate = 8000

    def __init__(self, hotwords: list[str] | None = None) -> None:
        self.hotwords = hotwords
        self.calls: list[dict] = []
        self.finished = 0
        self.during: list[list[str]] = []  # the temporary folder's files while a file was decoded
        self.watch: Path | None = None

    def info(self) -> dict:
        return {"name": "fake", "path": "/nowhere/fake", "sample_rate": 8000, "vocabulary": " abc", "has_lm": False}

    def with_options(self, **changes) -> FakeRecognizer:
        copy = FakeRecognizer(changes.get("hotwords", self.hotwords))
        copy.calls, copy.watch, copy.during = self.calls, self.watch, self.during
        return copy

    def transcribe(self, path: str, *, beam_width: int = 0, timestamps: bool = False) -> Transcript:
        if self.watch is not None:
            self.during.append(sorted(p.name for p in self.watch.iterdir()))
        info = audio_info(path)
        self.calls.append({"beam_width": beam_width, "timestamps": timestamps, "hotwords": self.hotwords})
        words = tuple(Word(t, t + 0.4, f"w{k}", 0.3 if k % 2 else 0.9) for k, t in enumerate(np.arange(0, 1.0, 0.5)))
        segment = Segment(0.0, info.seconds, f"{info.frames} frames", 0.7, words)
        return Transcript(segment.text, info.seconds, 0.7, (segment,), words if timestamps else None)

    def stream(self, sample_rate: int | None = None) -> FakeSession:
        return FakeSession(sample_rate or self.sample_rate, self)


@pytest.fixture
def wav(tmp_path) -> Path:
    """1 s of a tone at 8 kHz, 16-bit."""
    return write_wav(tmp_path / "tone.wav", 8000, (sine(8000, 1.0) * 32767).astype(np.int16))


def client(recognizer=None, **options) -> TestClient:
    """A TestClient of a server on `recognizer` (a fake by default) with these ServeOptions."""
    return TestClient(create_app(recognizer or FakeRecognizer(), ServeOptions(**options)))


def post(c: TestClient, path: Path, headers: dict | None = None, **fields) -> object:
    """POST a file to the transcription endpoint with form fields."""
    with path.open("rb") as f:
        return c.post(URL, files={"file": (path.name, f, "audio/wav")}, data=fields, headers=headers or {})


def error_of(response) -> dict:
    """The error object of a JSON error response."""
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


# The formats, on a transcript built by hand


def _transcript() -> Transcript:
    words = tuple(Word(0.5 + k * 0.5, 0.9 + k * 0.5, f"word{k}", 0.9) for k in range(40))
    first = Segment(0.4, 20.5, " ".join(w.word for w in words), 0.9, words)
    second = Segment(21.0, 22.0, "tail", 0.5, (Word(21.1, 21.8, "tail", 0.5),))
    return Transcript(
        f"{first.text} tail", 22.0, 0.88, (first, Segment(20.5, 21.0, "", 1.0), second), (*words, *second.words)
    )


def test_subtitle_cues_stay_within_their_limits_and_segments():
    cues = formats.cues(_transcript())
    assert all(len(text) <= formats.CUE_MAX_CHARS for _, _, text in cues)
    assert all(end - start <= formats.CUE_MAX_SECONDS for start, end, _ in cues)
    assert " ".join(text for _, _, text in cues) == _transcript().text  # every word once, in order
    assert cues[-1] == (21.1, 21.8, "tail")  # the last segment's word is a cue of its own
    assert len(cues) > 2


def test_srt_and_vtt_layout():
    srt = formats.as_srt(_transcript())
    assert srt.startswith("1\n00:00:00,500 --> 00:00:")
    assert srt.endswith("\n00:00:21,100 --> 00:00:21,800\ntail\n")
    vtt = formats.as_vtt(_transcript())
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> ")
    assert "\n\n00:00:21.100 --> 00:00:21.800\ntail\n" in vtt
    assert formats.as_srt(Transcript("", 1.0, 1.0, (Segment(0, 1, "", 1.0),))) == ""


def test_verbose_json_segments_and_words():
    record = formats.as_verbose_json(_transcript(), "en", ["segment", "word"])
    assert record["task"] == "transcribe" and record["language"] == "en" and record["duration"] == 22.0
    assert [s["id"] for s in record["segments"]] == [0, 1]  # the empty segment is left out
    assert record["segments"][1] | {"compression_ratio": None} == {
        "id": 1, "start": 21.0, "end": 22.0, "text": "tail", "confidence": 0.5, "temperature": 0.0,
        "compression_ratio": None,
    }  # fmt: skip
    assert record["words"][-1] == {"word": "tail", "start": 21.1, "end": 21.8, "probability": 0.5}
    assert "words" not in formats.as_verbose_json(_transcript(), "en", ["segment"])


def test_options_refuse_bad_limits():
    for bad in ({"workers": 0}, {"max_mb": 0}, {"max_seconds": -1}, {"max_streams": -1}, {"port": 70000},
                {"api_key": " "}, {"idle_seconds": 0}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad)).replace("_", "-")):
            ServeOptions(**bad)


# HTTP with the stand-in recognizer


def test_every_response_format_of_the_endpoint(wav):
    with client() as c:
        assert post(c, wav).json() == {"text": "8000 frames", "usage": {"type": "duration", "seconds": 1}}
        text = post(c, wav, response_format="text")
        assert text.text == "8000 frames\n" and text.headers["content-type"].startswith("text/plain")
        srt = post(c, wav, response_format="srt")
        assert srt.text == "1\n00:00:00,000 --> 00:00:00,900\nw0 w1\n"
        assert post(c, wav, response_format="vtt").text == "WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nw0 w1\n"
        verbose = post(c, wav, response_format="verbose_json", language="nl").json()
        assert verbose["language"] == "nl" and verbose["segments"][0]["text"] == "8000 frames"
        assert "words" not in verbose


def test_timestamp_granularities_ask_for_word_times(wav):
    fake = FakeRecognizer()
    with client(fake) as c:
        words = post(c, wav, response_format="verbose_json", **{"timestamp_granularities[]": ["word"]}).json()
        assert [w["word"] for w in words["words"]] == ["w0", "w1"] and "segments" not in words
        both = post(c, wav, response_format="verbose_json", **{"timestamp_granularities[]": ["word", "segment"]})
        assert {"words", "segments"} <= set(both.json())
        refused = post(c, wav, response_format="json", **{"timestamp_granularities[]": ["word"]})
        assert refused.status_code == 400 and "needs response_format=verbose_json" in error_of(refused)["message"]
        assert post(c, wav, response_format="verbose_json", **{"timestamp_granularities[]": ["x"]}).status_code == 400
    assert [call["timestamps"] for call in fake.calls] == [True, True]


def test_prompt_beam_width_and_lm_reach_the_recognizer(wav):
    fake = FakeRecognizer()
    with client(fake) as c:
        assert post(c, wav, prompt="Anna, Bob van Dijk;  Ximena\nzed", beam_width="16").status_code == 200
        assert post(c, wav).status_code == 200
        bad = post(c, wav, lm="/etc/passwd")
        assert bad.status_code == 400 and error_of(bad)["param"] == "lm"
        assert post(c, wav, beam_width="many").status_code == 400
        assert post(c, wav, temperature="3").status_code == 400
        assert post(c, wav, response_format="mp3").status_code == 400
    assert fake.calls[0] == {
        "beam_width": 16,
        "timestamps": False,
        "hotwords": ["Anna", "Bob van Dijk", "Ximena", "zed"],
    }
    assert fake.calls[1]["hotwords"] is None  # the server's own (none) when the request sends no prompt


def test_the_api_key_guards_everything_but_health_and_the_page(wav):
    with client(api_key=KEY) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200 and "<title>asr-serve</title>" in c.get("/").text
        assert c.get("/static/app.js").status_code == 200
        form = c.get("/openapi.json").json()["paths"][URL]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert {"file", "prompt", "response_format", "timestamp_granularities[]"} <= set(form["schema"]["properties"])
        assert c.get("/docs").status_code == 404  # FastAPI's would load scripts from a CDN
        missing = post(c, wav)
        assert missing.status_code == 401 and error_of(missing)["type"] == "authentication_error"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and error_of(wrong)["code"] == "invalid_api_key"
        good = {"Authorization": f"Bearer {KEY}"}
        assert c.get("/v1/models", headers=good).json()["data"][0]["id"] == "fake"
        assert c.get("/v1/models/fake", headers=good).json()["path"] == "fake"  # the folder's name, not the path
        assert c.get("/v1/models/other", headers=good).status_code == 404
        assert post(c, wav, headers=good).json()["text"] == "8000 frames"


def test_uploads_over_the_size_limit_get_413(wav):
    with client(max_mb=0.01) as c:  # 10 kB; the file is 16 kB
        declared = post(c, wav)
        assert declared.status_code == 413 and "over this server's limit of 0.01 MB" in error_of(declared)["message"]

        def chunks():  # no Content-Length: the body is counted as it comes
            yield b"--b\r\nContent-Disposition: form-data; name=file; filename=x.wav\r\n\r\n"
            yield from (wav.read_bytes()[i : i + 4096] for i in range(0, wav.stat().st_size, 4096))
            yield b"\r\n--b--\r\n"

        streamed = c.post(URL, content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert streamed.status_code == 413 and error_of(streamed)["code"] == "file_too_large"


def test_recordings_over_the_seconds_limit_get_413(wav):
    with client(max_seconds=0.5) as c:
        response = post(c, wav)
    assert response.status_code == 413
    assert error_of(response)["message"].startswith(
        "file 'tone.wav': 1.0 s of audio, over this server's limit of 0.5 s"
    )


def test_unreadable_audio_gets_400_with_the_reason(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    empty = write_wav(tmp_path / "empty.wav", 8000, np.zeros(0, np.int16))
    with client() as c:
        response = post(c, bad)
        assert response.status_code == 400 and error_of(response)["code"] == "bad_audio"
        assert error_of(response)["message"].startswith("file 'notes.wav': not a readable audio file (")
        assert "holds no audio samples" in error_of(post(c, empty))["message"]
        no_file = c.post(URL, data={"model": "x"}, files={"other": ("a", b"1")})
        assert no_file.status_code == 400 and error_of(no_file)["param"] == "file"
        assert c.post(URL, json={"file": "x"}).status_code == 400
        assert (
            c.get("/v1/nothing").status_code == 404 and "no such endpoint" in error_of(c.get("/v1/nothing"))["message"]
        )


def test_no_temporary_file_is_left_behind(wav, tmp_path, monkeypatch):
    import tempfile

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    fake = FakeRecognizer()
    fake.watch = spool

    class Failing(FakeRecognizer):
        def transcribe(self, path, **kwargs):
            raise RuntimeError("a bug")

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt ")
    with client(fake, max_seconds=0.5) as c:
        assert post(c, wav).status_code == 413
        assert post(c, bad).status_code == 400
    with client(fake) as c:
        assert post(c, wav).status_code == 200
    with TestClient(create_app(Failing()), raise_server_exceptions=False) as c:  # a bug: 500, still no file
        failed = post(c, wav)
        assert failed.status_code == 500 and error_of(failed)["type"] == "server_error"
    assert len(fake.during) == 1 and fake.during[0][0].startswith("asr-serve-")  # the copy existed while decoding
    assert list(spool.iterdir()) == []


def test_health_answers_while_a_long_request_decodes(wav):
    started, release = threading.Event(), threading.Event()

    class Slow(FakeRecognizer):
        def transcribe(self, path, **kwargs):
            started.set()
            release.wait(WAIT)
            return super().transcribe(path, **kwargs)

    with client(Slow()) as c:
        results = []
        upload = threading.Thread(target=lambda: results.append(post(c, wav)))
        upload.start()
        assert started.wait(WAIT)
        health = c.get("/health")
        answered_while_decoding = not release.is_set()
        release.set()
        upload.join(WAIT)
    assert answered_while_decoding and health.json()["decoding"] == 1
    assert results[0].json()["text"] == "8000 frames"


# The WebSocket with the stand-in recognizer


def pcm(samples: int, value: int = 1000) -> bytes:
    """16-bit PCM of `samples` equal samples."""
    return np.full(samples, value, "<i2").tobytes()


def close_of(ws) -> tuple[int, str]:
    """The close code and reason the server sent next."""
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_json()
    return closed.value.code, closed.value.reason


def test_a_stream_is_answered_frame_by_frame_and_eof_ends_it():
    fake = FakeRecognizer()
    with client(fake) as c, c.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"config": {"sample_rate": 16000, "words": True}}))
        ws.send_bytes(pcm(1600))
        assert ws.receive_json() == {"partial": "1600 samples"}
        ws.send_bytes(pcm(800) + b"\x00")  # an odd byte: half a sample, kept for the next frame
        assert ws.receive_json() == {"partial": "2400 samples"}
        ws.send_bytes(b"\x00" + pcm(1600, 0))  # the odd byte completed; zeros close a segment
        assert ws.receive_json() == {"text": "upto 2400"}
        ws.send_text('{"eof" : 1}')  # Vosk's clients send this exact string
        assert ws.receive_json() == {"text": "end 4001"}
        assert close_of(ws) == (CLOSE_NORMAL, "")
        assert c.get("/health").json()["streams"] == 0
    assert fake.finished == 1


def test_vosk_results_carry_words_when_asked():
    from asr.serve.ws import vosk_result

    words = (Word(1.0, 1.3, "five", 0.93456), Word(1.4, 1.9, "three", 0.5))
    segments = (Segment(0.8, 2.0, "five three", 0.7, words), Segment(2.0, 2.5, "", 1.0))
    assert vosk_result(segments, words=True) == {
        "result": [
            {"conf": 0.9346, "end": 1.3, "start": 1.0, "word": "five"},
            {"conf": 0.5, "end": 1.9, "start": 1.4, "word": "three"},
        ],
        "text": "five three",
    }
    assert vosk_result(segments, words=False) == {"text": "five three"}
    assert vosk_result((), words=True) == {"text": ""}


def test_reset_ends_a_segment_and_starts_afresh():
    fake = FakeRecognizer()
    with client(fake) as c, c.websocket_connect("/ws") as ws:
        ws.send_bytes(pcm(800))
        assert ws.receive_json() == {"partial": "800 samples"}
        ws.send_text(json.dumps({"reset": 1}))
        assert ws.receive_json() == {"text": "end 800"}
        ws.send_bytes(pcm(100))
        assert ws.receive_json() == {"partial": "100 samples"}  # a new stream
        ws.send_text(json.dumps({"eof": 1}))
        assert ws.receive_json() == {"text": "end 100"}
    assert fake.finished == 2


def test_a_bad_config_or_frame_closes_the_stream_with_the_reason():
    cases = [
        ({"config": {"sample_rate": 100}}, CLOSE_INVALID, "config: sample_rate 100 is outside 8000-192000"),
        ({"config": {"rate": 8000}}, CLOSE_INVALID, "config: unknown key 'rate'; known: sample_rate, phrase_list"),
        ({"config": {"phrase_list": "abc"}}, CLOSE_INVALID, "config: phrase_list must be a list of strings"),
        ({"hello": 1}, CLOSE_UNSUPPORTED, "unknown command"),
    ]
    with client() as c:
        for message, code, reason in cases:
            with c.websocket_connect("/ws") as ws:
                ws.send_text(json.dumps(message))
                got = close_of(ws)
                assert got[0] == code and got[1].startswith(reason), got
        with c.websocket_connect("/ws") as ws:
            ws.send_text("eof")
            assert close_of(ws)[0] == CLOSE_UNSUPPORTED
        with c.websocket_connect("/ws") as ws:
            ws.send_bytes(pcm(100))
            ws.receive_json()
            ws.send_text(json.dumps({"config": {"sample_rate": 8000}}))
            assert close_of(ws) == (CLOSE_INVALID, "config must come before the audio")


def test_streams_beyond_the_limit_are_closed_with_1013_and_a_slot_frees_when_a_client_leaves():
    fake = FakeRecognizer()
    with client(fake, max_streams=1) as c:
        with c.websocket_connect("/ws") as first:
            first.send_bytes(pcm(800))
            assert first.receive_json() == {"partial": "800 samples"}
            with c.websocket_connect("/ws") as second:
                code, reason = close_of(second)
            assert code == CLOSE_BUSY and "(--max-streams 1)" in reason
            assert c.get("/health").json()["streams"] == 1
        # the first client left mid-stream, without eof: its slot is free, its stream was never finished
        assert c.get("/health").json()["streams"] == 0
        with c.websocket_connect("/ws") as third:
            third.send_bytes(pcm(800))
            assert third.receive_json() == {"partial": "800 samples"}
    assert fake.finished == 0


def test_an_idle_stream_is_closed_and_a_long_one_stops_at_max_seconds():
    with client(idle_seconds=0.2) as c, c.websocket_connect("/ws") as ws:
        code, reason = close_of(ws)
        assert code == CLOSE_IDLE and "--idle-seconds" in reason
    with client(max_seconds=0.2) as c, c.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"config": {"sample_rate": 8000}}))
        ws.send_bytes(pcm(1600))  # exactly 0.2 s: still allowed
        assert ws.receive_json() == {"partial": "1600 samples"}
        ws.send_bytes(pcm(8))
        assert ws.receive_json() == {"partial": "1608 samples"}
        assert ws.receive_json() == {"text": "end 1608"}  # the last result comes before the close
        code, reason = close_of(ws)
        assert code == CLOSE_TOO_LONG and "0.2 s" in reason


def test_the_websocket_key_as_header_subprotocol_or_query():
    with client(api_key=KEY) as c:
        with c.websocket_connect("/ws") as ws:
            assert close_of(ws)[0] == CLOSE_UNAUTHORIZED
        with c.websocket_connect("/ws", subprotocols=["vosk", "bearer.wrong"]) as ws:
            assert close_of(ws)[0] == CLOSE_UNAUTHORIZED
        for connect in (
            {"subprotocols": ["vosk", f"bearer.{KEY}"]},
            {"headers": {"Authorization": f"Bearer {KEY}"}},
            {"url": f"/ws?api_key={KEY}"},
        ):
            with c.websocket_connect(connect.pop("url", "/ws"), **connect) as ws:
                if "subprotocols" in connect:
                    assert ws.accepted_subprotocol == "vosk"
                ws.send_bytes(pcm(10))
                assert ws.receive_json() == {"partial": "10 samples"}


# With the demo model: the same answers as asr-transcribe


@pytest.fixture(scope="module")
def demo_recognizer(demo_run):
    """The shared demo model, loaded once for this module."""
    import asr.inference.recognizer as recognizer

    return recognizer.load(demo_run)


def _cli(argv: list[str], capsys) -> list[dict]:
    """asr-transcribe's JSON lines (in this process)."""
    from asr.cli.transcribe import main

    capsys.readouterr()
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def _joined(tmp_path: Path, files: list[Path], pause: float = 1.0) -> Path:
    """Test utterances (8 kHz, 16-bit) joined with `pause` seconds of silence, and as much before and after."""
    gap = np.zeros(int(8000 * pause), np.int16)
    parts = [gap]
    for f in files:
        parts += [soundfile.read(f, dtype="int16")[0], gap]
    return write_wav(tmp_path / "joined.wav", 8000, np.concatenate(parts))


@pytest.mark.slow
def test_http_text_equals_asr_transcribes(demo_run, demo_recognizer, tmp_path, capsys):
    files = [*TEST_WAVS[:3], _joined(tmp_path, TEST_WAVS[3:6])]
    expected = {Path(r["audio"]).name: r["text"] for r in _cli([str(demo_run), *map(str, files), "--json"], capsys)}
    with client(demo_recognizer) as c:
        got = {f.name: post(c, f).json()["text"] for f in files}
        verbose = post(c, files[-1], response_format="verbose_json", **{"timestamp_granularities[]": ["word"]})
    assert got == expected and all(got.values())
    words = verbose.json()["words"]
    assert " ".join(w["word"] for w in words) == expected["joined.wav"]
    assert all(0 <= w["start"] < w["end"] <= verbose.json()["duration"] for w in words)


@pytest.mark.slow
def test_a_prompt_is_used_as_hotwords(demo_recognizer, capsys):
    wav = TEST_WAVS[1]
    plain = demo_recognizer.transcribe(str(wav)).text
    boosted = demo_recognizer.with_options(hotwords=["nine nine nine:30"]).transcribe(str(wav)).text
    assert boosted != plain  # the hotword changes this transcript
    with client(demo_recognizer) as c:
        assert post(c, wav).json()["text"] == plain
        assert post(c, wav, prompt="nine nine nine:30").json()["text"] == boosted
        greedy = post(c, wav, prompt="nine", beam_width="1")  # a greedy decoding cannot favour hotwords
        assert greedy.status_code == 400 and error_of(greedy)["param"] == "beam_width"
        refused = post(c, wav, prompt="42")  # no letter the model can write
        assert refused.status_code == 400 and "42" in error_of(refused)["message"]


@pytest.mark.slow
def test_websocket_results_equal_asr_transcribe_stream(demo_run, demo_recognizer, tmp_path, capsys):
    joined = _joined(tmp_path, TEST_WAVS[6:9])
    records = _cli([str(demo_run), str(joined), "--stream", "--json", "--timestamps"], capsys)
    finals = [r for r in records if "final" in r and r["final"]]
    expected = [[(w["word"], w["start"], w["end"]) for w in r["words"]] for r in finals]
    samples = soundfile.read(joined, dtype="int16")[0]
    frame = 8000 * 200 // 1000  # 200 ms
    results = []
    with client(demo_recognizer) as c, c.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"config": {"sample_rate": 8000}}))
        for begin in range(0, len(samples), frame):
            ws.send_bytes(samples[begin : begin + frame].astype("<i2").tobytes())
            message = ws.receive_json()
            assert set(message) in ({"partial"}, {"text"}, {"text", "result"})
            results.append(message)
        ws.send_text(json.dumps({"eof": 1}))
        results.append(ws.receive_json())
        assert close_of(ws)[0] == CLOSE_NORMAL
    got = [m for m in results if m.get("text")]
    assert [m["text"] for m in got] == [r["final"] for r in finals] and len(got) == 3
    assert [[(w["word"], w["start"], w["end"]) for w in m["result"]] for m in got] == expected
    assert any("partial" in m and m["partial"] for m in results)


@pytest.mark.slow
def test_the_openai_client_works_against_the_server(demo_recognizer, demo_run):
    openai = pytest.importorskip("openai")
    wav = TEST_WAVS[0]
    expected = demo_recognizer.transcribe(str(wav)).text
    with client(demo_recognizer, api_key=KEY) as c:
        api = openai.OpenAI(api_key=KEY, base_url="http://testserver/v1", http_client=c, max_retries=0)
        with wav.open("rb") as f:
            assert api.audio.transcriptions.create(model="whisper-1", file=f).text == expected
        with wav.open("rb") as f:
            verbose = api.audio.transcriptions.create(
                model="whisper-1", file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
            )
        assert verbose.text == expected and verbose.segments[0].text == expected
        assert " ".join(w.word for w in verbose.words) == expected
        with wav.open("rb") as f:
            assert api.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt").startswith("1\n")
        assert [m.id for m in api.models.list()] == [demo_run.name]
        wrong = openai.OpenAI(api_key="nope", base_url="http://testserver/v1", http_client=c, max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="wrong API key"), wav.open("rb") as f:
            wrong.audio.transcriptions.create(model="whisper-1", file=f)


# The command


def test_the_command_ends_a_users_mistake_in_one_line(tmp_path, capsys):
    import socket

    from asr.cli.serve import main

    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path), "--port", "70000"])
    assert exited.value.code == 2 and "--port must be 0-65535" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith(f"asr-serve: error: {tmp_path / 'nothing'}: no such file or directory;")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"asr-serve: error: cannot listen on 127.0.0.1:{port} (") and err.count("\n") == 1


@pytest.mark.slow
def test_asr_serve_serves_a_run_until_sigterm(demo_run, demo_recognizer, tmp_path):
    import http.client
    import re
    import signal
    import subprocess
    import sys

    from asr.bench.serve import multipart

    command = [sys.executable, "-m", "asr.cli.serve", str(demo_run), "--port", "0", "--api-key", KEY]
    log = tmp_path / "server.log"
    with log.open("w") as errors, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as server:
        try:
            ready = server.stdout.readline()
            match = re.fullmatch(r"asr-serve: serving demo at http://127\.0\.0\.1:(\d+)/\n", ready)
            assert match, ready + log.read_text()
            connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=WAIT)
            body, content_type = multipart(TEST_WAVS[0].read_bytes(), TEST_WAVS[0].name, {"response_format": "text"})
            connection.request("POST", URL, body, {"Content-Type": content_type, "Authorization": f"Bearer {KEY}"})
            response = connection.getresponse()
            expected = demo_recognizer.transcribe(TEST_WAVS[0]).text + "\n"
            assert (response.status, response.read().decode()) == (200, expected)
            connection.request("GET", "/")
            assert b"<title>asr-serve</title>" in connection.getresponse().read()
            connection.close()
        finally:
            server.terminate()
            # uvicorn finishes open requests, then ends by the signal it got (as a process killed by it would)
            assert server.wait(WAIT) == -signal.SIGTERM
    assert "Finished server process" in log.read_text()
