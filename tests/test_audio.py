import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import sine, write_wav
from hypothesis import example, given
from hypothesis import strategies as st
from scipy.io import wavfile

from asr.data.audio import AudioError, audio_files, load_audio, read_audio, resample

RATE = 16000


def write_pcm24(path, rate, samples: np.ndarray):
    """A 24-bit PCM WAV written by hand (scipy cannot write 24-bit)."""
    ints = np.round(samples * (2**23 - 1)).astype(np.int32)
    frames = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    header = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 3, 3, 24)
    path.write_bytes(header + fmt + b"data" + struct.pack("<I", len(frames)) + frames)
    return path


@pytest.mark.parametrize(
    "encode",
    [
        lambda x: (x * 127 + 128).round().astype(np.uint8),
        lambda x: (x * 32767).round().astype(np.int16),
        lambda x: (x * (2**31 - 1)).round().astype(np.int32),
        lambda x: x.astype(np.float32),
        lambda x: x.astype(np.float64),
    ],
    ids=["u8", "s16", "s32", "f32", "f64"],
)
def test_every_width_reads_to_the_same_float_signal(tmp_path, encode):
    x = sine(RATE)
    path = write_wav(tmp_path / "a.wav", RATE, encode(x))
    y = load_audio(path, RATE)
    assert y.dtype == np.float32 and y.shape == x.shape
    tolerance = 1.5 / 127 if encode(x).dtype == np.uint8 else 1e-4
    np.testing.assert_allclose(y, x, atol=tolerance)


def test_24_bit(tmp_path):
    x = sine(RATE)
    y = load_audio(write_pcm24(tmp_path / "a.wav", RATE, x), RATE)
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_channels_are_averaged(tmp_path):
    left, right = sine(RATE, hz=300), sine(RATE, hz=500, amplitude=0.25)
    stereo = (np.stack([left, right], axis=1) * 32767).astype(np.int16)
    y = load_audio(write_wav(tmp_path / "s.wav", RATE, stereo), RATE)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-4)


def test_resampling_keeps_duration_and_pitch(tmp_path):
    x = sine(44100, seconds=1.0, hz=1000)
    y = load_audio(write_wav(tmp_path / "hi.wav", 44100, x), 8000)
    assert len(y) == 8000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 8000 / len(y) - 1000) <= 1


def test_cut_in_seconds(tmp_path):
    x = np.arange(RATE * 2, dtype=np.int16)
    y = load_audio(write_wav(tmp_path / "c.wav", RATE, x), RATE, start=0.5, end=1.0)
    assert len(y) == RATE // 2
    assert y[0] == pytest.approx(8000 / 32768)
    with pytest.raises(AudioError, match=r"c\.wav: cut \[1\.5, 3\.0\] s lies outside"):
        load_audio(tmp_path / "c.wav", RATE, start=1.5, end=3.0)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a readable audio file"),
        (b"hello, this is text and not audio at all", "not a readable audio file"),
    ],
)
def test_broken_files_name_the_file_and_the_problem(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as e:
        load_audio(path, RATE)
    assert str(path) in str(e.value)


def test_truncated_data_is_an_error_not_silence(tmp_path):
    path = write_wav(tmp_path / "t.wav", RATE, (sine(RATE) * 32767).astype(np.int16))
    path.write_bytes(path.read_bytes()[:-1001])
    with pytest.raises(AudioError, match=r"t\.wav: damaged audio file"):
        load_audio(path, RATE)


def test_missing_and_empty_audio(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        load_audio(tmp_path / "nope.wav", RATE)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(write_wav(tmp_path / "e.wav", RATE, np.zeros(0, np.int16)), RATE)


def test_shared_ldc93s1_variants_agree(shared_data):
    base = load_audio(shared_data / "ldc93s1" / "LDC93S1.wav", 16000)
    stereo = load_audio(shared_data / "ldc93s1" / "LDC93S1_pcms16le_2_44100.wav", 16000)
    assert abs(len(base) - len(stereo)) <= 16
    n = min(len(base), len(stereo))
    assert np.corrcoef(base[:n], stereo[:n])[0, 1] > 0.95


# (file name, soundfile format, subtype, lossy): every container and sample type users bring
FORMATS = [
    ("a.flac", "FLAC", "PCM_16", False),
    ("a.ogg", "OGG", "VORBIS", True),
    ("a.opus", "OGG", "OPUS", True),
    ("a.mp3", "MP3", "MPEG_LAYER_III", True),
    ("a.sph", "NIST", "PCM_16", False),
    ("A.WAV", "NIST", "PCM_16", False),  # TIMIT: SPHERE files named .WAV
    ("a24.wav", "WAVEX", "PCM_24", False),
    ("alaw.wav", "WAV", "ALAW", True),
    ("ulaw.wav", "WAV", "ULAW", True),
    ("a.aiff", "AIFF", "PCM_16", False),
    ("a.w64", "W64", "FLOAT", False),
    ("a.caf", "CAF", "PCM_16", False),
]


@pytest.mark.parametrize(("name", "container", "subtype", "lossy"), FORMATS, ids=[f[0] for f in FORMATS])
def test_every_container_and_sample_type_reads_to_the_same_signal(tmp_path, name, container, subtype, lossy):
    x = sine(48000 if subtype == "OPUS" else RATE, seconds=1.0, hz=440, amplitude=0.5)
    rate = 48000 if subtype == "OPUS" else RATE  # Opus runs at 48 kHz
    soundfile.write(tmp_path / name, x, rate, format=container, subtype=subtype)
    y = load_audio(tmp_path / name, RATE)
    expected = load_audio_reference(x, rate)
    assert y.dtype == np.float32 and abs(len(y) - len(expected)) <= RATE // 20  # MP3/Opus pad a few ms
    n = min(len(y), len(expected))
    if lossy:
        shift = int(np.argmax(np.correlate(y[: n // 2], expected[: n // 2], "full"))) - (n // 2 - 1)
        a, b = (y[shift:n], expected[: n - shift]) if shift >= 0 else (y[: n + shift], expected[-shift:n])
        assert np.corrcoef(a, b)[0, 1] > 0.98
    else:
        np.testing.assert_allclose(y[:n], expected[:n], atol=1e-3)


def load_audio_reference(x: np.ndarray, rate: int) -> np.ndarray:
    """What a reader should return for float samples x at `rate`: x at RATE."""
    return x if rate == RATE else resample(x, rate, RATE)


def test_folders_are_searched_for_every_audio_suffix_in_any_case(tmp_path):
    for name in ("a.wav", "b.FLAC", "sub/c.Mp3", "d.txt", "e.sph", "f.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in audio_files(tmp_path)]
    assert found == ["a.wav", "b.FLAC", "e.sph", "sub/c.Mp3"]


def test_nan_samples_are_refused(tmp_path):
    x = sine(RATE)
    x[100] = np.nan
    soundfile.write(tmp_path / "nan.wav", x, RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: the samples include NaN or infinite values"):
        load_audio(tmp_path / "nan.wav", RATE)


def test_a_cut_reads_only_its_frames_of_a_flac(tmp_path):
    x = np.linspace(-0.5, 0.5, RATE * 4, dtype=np.float32)
    soundfile.write(tmp_path / "long.flac", x, RATE, subtype="PCM_24")
    y = load_audio(tmp_path / "long.flac", RATE, start=1.0, end=1.5)
    np.testing.assert_allclose(y, x[RATE : RATE + RATE // 2], atol=1e-6)


# Property-based tests (hypothesis; profile in conftest.py): whatever a file holds, the readers return float32 mono
# in [-1, 1] without NaN or inf, or raise AudioError naming the file; never another exception.

FUZZ_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
# Starts of real files, so that random bytes after them get past each container's first check.
MAGIC = (
    b"",
    b"RIFF\xff\x00\x00\x00WAVEfmt ",
    b"fLaC\x00\x00\x00\x22",
    b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00",
    b"ID3\x04\x00\x00\x00\x00\x00\x00",
    b"\xff\xfb\x90\x64",
)
# WAVE_FORMAT_EXTENSIBLE sub-formats: PCM and IEEE float (the GUID's tail is the same for both).
_GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def assert_valid_waveform_or_audio_error(path: Path, sample_rate: int = RATE, start=None, end=None) -> bool:
    """read_audio and load_audio of `path` give non-empty float32 mono in [-1, 1] without NaN or inf, or AudioError
    naming the file (the test fails on any other exception); True when both read it. load_audio fails when
    read_audio does, and else only when resampling to a lower rate leaves no sample."""
    try:
        recording = read_audio(path, start, end)
    except AudioError as e:
        assert str(path) in str(e)
        with pytest.raises(AudioError):
            load_audio(path, sample_rate, start, end)
        return False
    assert recording.samplerate > 0 and recording.channels > 0 and recording.samples.size > 0
    try:
        resampled = load_audio(path, sample_rate, start, end)
    except AudioError as e:  # only when no sample is left at sample_rate
        assert "too short" in str(e) and recording.samplerate > sample_rate
        return False
    for y in (recording.samples, resampled):
        assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 1 and y.size > 0
        assert np.isfinite(y).all() and (np.abs(y) <= 1.0).all(), f"{y.min()} .. {y.max()}"
    return True


def _scratch(name: str, content: bytes = b""):
    """A fresh folder with the file `name` (holding `content`) for one example: (folder context, path)."""
    folder = tempfile.TemporaryDirectory(prefix="asr-fuzz-")
    path = Path(folder.name) / name
    path.write_bytes(content)
    return folder, path


@given(magic=st.sampled_from(MAGIC), content=st.binary(max_size=4096), suffix=st.sampled_from(FUZZ_SUFFIXES))
@example(magic=b"", content=b"", suffix=".wav")
def test_random_bytes_read_to_a_valid_waveform_or_raise_audio_error(magic, content, suffix):
    folder, path = _scratch(f"fuzz{suffix}", magic + content)
    with folder:
        assert_valid_waveform_or_audio_error(path)


# (format tag, bits per sample) that libsndfile reads: PCM, IEEE float, A-law, u-law, WAVE_FORMAT_EXTENSIBLE.
WAV_ENCODINGS = [(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64), (6, 8), (7, 8), (0xFFFE, 16), (0xFFFE, 32)]
# Header fields that wav_headers() may set to a random value instead of the one that fits the others.
WAV_FIELDS = ("tag", "channels", "rate", "bits", "align", "byte_rate", "sub_format", "fmt_size", "riff_size")


@st.composite
def wav_headers(draw) -> bytes:
    """A RIFF/WAVE file: a header whose fields fit each other, but for a random few set to random values (format
    tag, channels 0-8, rate 0-200000, bits, block align, ...), maybe a chunk before the data, and a data chunk
    whose stated size is right, smaller or larger than its bytes, or left open."""
    broken = draw(st.sets(st.sampled_from(WAV_FIELDS), max_size=3))

    def field(name, fitting, anything):
        return draw(anything) if name in broken else fitting

    tag, bits = draw(st.sampled_from(WAV_ENCODINGS))
    tag = field("tag", tag, st.integers(0, 0xFFFF))
    channels = field("channels", draw(st.integers(1, 8)), st.integers(0, 8))
    rate = field("rate", draw(st.sampled_from([8000, 16000, 22050, 44100, 48000])), st.integers(0, 200_000))
    bits = field("bits", bits, st.integers(0, 64))
    align = field("align", channels * bits // 8, st.integers(0, 64))
    byte_rate = field("byte_rate", rate * align, st.integers(0, 2**32 - 1))
    fmt = struct.pack("<HHIIHH", tag, channels, rate, byte_rate, align, bits)
    if tag == 0xFFFE:
        sub_format = field("sub_format", 3 if bits == 32 else 1, st.integers(0, 0xFFFF))
        mask = draw(st.sampled_from([0, 4, 3]) | st.integers(0, 2**32 - 1))  # speaker positions
        fmt += struct.pack("<HHII", 22, bits, mask, sub_format) + _GUID_TAIL
    else:
        fmt += draw(st.sampled_from([b"", b"\x00\x00"]))  # cbSize of an 18-byte fmt chunk
    chunks = b"fmt " + struct.pack("<I", field("fmt_size", len(fmt), st.integers(0, 64))) + fmt
    if draw(st.booleans()):  # e.g. LIST or fact before the data; odd sizes are padded
        payload = draw(st.binary(max_size=64))
        chunks += draw(st.sampled_from([b"LIST", b"fact", b"junk"])) + struct.pack("<I", len(payload)) + payload
        chunks += b"\x00" * (len(payload) & 1)
    frames = draw(st.integers(0, 2048 // max(align, 1)))
    data = draw(st.binary(min_size=frames * align, max_size=frames * align) | st.binary(max_size=2048))
    stated = draw(
        st.just(len(data))
        | st.integers(0, len(data))
        | st.integers(len(data), len(data) + 4096)
        | st.just(0xFFFFFFFF)  # streaming writers leave the size open
    )
    body = b"WAVE" + chunks + b"data" + struct.pack("<I", stated) + data
    return b"RIFF" + struct.pack("<I", field("riff_size", len(body), st.integers(0, 2**32 - 1))) + body


@given(content=wav_headers(), sample_rate=st.sampled_from([8000, RATE]))
def test_random_wav_headers_read_to_a_valid_waveform_or_raise_audio_error(content, sample_rate):
    folder, path = _scratch("header.wav", content)
    with folder:
        assert_valid_waveform_or_audio_error(path, sample_rate)


# How samples are written, and the sample types each writer takes: scipy (the array's dtype decides the WAV
# format) or soundfile (container-subtype; ints for the PCM subtypes: soundfile fails writing NaN to FLAC).
WRITERS = {
    "scipy": (np.float32, np.float64, np.int16, np.int32, np.uint8),
    "WAV-FLOAT": (np.float32, np.float64),
    "WAV-DOUBLE": (np.float32, np.float64),
    "WAV-PCM_16": (np.int16, np.int32),
    "FLAC-PCM_16": (np.int16, np.int32),
    "FLAC-PCM_24": (np.int16, np.int32),
}
FLOAT_WRITERS = ("WAV-FLOAT", "WAV-DOUBLE")


@st.composite
def written_samples(draw) -> tuple[str, np.ndarray]:
    """(writer, [frames, channels] samples it takes): noise, full-scale +-1 (overshoots when resampled) or, for
    floats, random bit patterns (NaN, inf, huge and tiny values), with a few extremes set at random places.
    NumPy makes the bulk from a drawn seed: drawing every element with hypothesis costs 0.5 s an example."""
    writer = draw(st.sampled_from(sorted(WRITERS)))
    dtype = np.dtype(draw(st.sampled_from(WRITERS[writer])))
    shape = (draw(st.integers(1, 300)), draw(st.integers(1, 4)))
    kind = draw(st.sampled_from(["noise", "full scale", "bits"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        low, high, extremes = -1.0, 1.0, [np.nan, np.inf, -np.inf, 1.0, -1.0, 1e30, -1e-40]
    else:
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
        extremes = [low, high]
    if kind == "bits" and dtype.kind == "f":
        samples = rng.integers(0, 256, shape[0] * shape[1] * dtype.itemsize, dtype=np.uint8).view(dtype)
    elif kind == "full scale":
        samples = rng.choice(np.array([low, high], dtype), shape[0] * shape[1])
    else:
        samples = rng.uniform(low, high, shape[0] * shape[1]).astype(dtype)
    samples = samples.reshape(shape)
    for i in draw(st.lists(st.integers(0, samples.size - 1), max_size=3)):
        samples.flat[i] = draw(st.sampled_from(extremes))
    return writer, samples


@given(
    written=written_samples(),
    rate=st.sampled_from([8000, RATE, 22050, 44100]),
    sample_rate=st.sampled_from([8000, RATE]),
    cut=st.none() | st.tuples(st.none() | st.floats(), st.none() | st.floats()),
)
@example(  # a full-scale square wave at 44.1 kHz, resampled to 16 kHz
    written=("WAV-FLOAT", np.tile(np.array([[1.0], [-1.0]] * 8 + [[1.0]] * 16, np.float32), (20, 1))),
    rate=44100,
    sample_rate=RATE,
    cut=None,
)
@example(written=("WAV-FLOAT", np.full((2, 1), 0.5, np.float32)), rate=44100, sample_rate=8000, cut=None)  # too short
def test_written_samples_read_back_in_range_and_nan_or_inf_is_refused(written, rate, sample_rate, cut):
    writer, samples = written
    folder, path = _scratch("samples.flac" if writer.startswith("FLAC") else "samples.wav")
    with folder:
        if writer == "scipy":
            wavfile.write(path, rate, samples)
        else:
            container, subtype = writer.split("-", 1)
            soundfile.write(path, samples, rate, format=container, subtype=subtype)
        start, end = cut or (None, None)
        read = assert_valid_waveform_or_audio_error(path, sample_rate, start, end)
        floats = writer in FLOAT_WRITERS or (writer == "scipy" and samples.dtype.kind == "f")
        if floats and not np.isfinite(samples).all() and cut is None:
            assert not read, "NaN or inf samples must be refused"
        in_range = samples.dtype.kind in "iu" or (np.isfinite(samples).all() and (np.abs(samples) <= 1).all())
        if cut is None and in_range:
            assert read or len(samples) * sample_rate < rate, "integer samples, or floats in [-1, 1], must be read"
            y = read_audio(path).samples
            assert len(y) == len(samples)
            if writer in FLOAT_WRITERS:
                np.testing.assert_allclose(y, samples.astype(np.float32).mean(axis=1), atol=1e-6)


def test_trimming_cuts_the_silence_around_speech_to_the_margin():
    from asr.data.audio import TRIM_MARGIN_SECONDS, speech_span, trim_silence

    rate = 16000
    rng = np.random.default_rng(0)
    speech = sine(rate, seconds=1.0, hz=300.0, amplitude=0.3)
    hiss = rng.normal(0.0, 1e-4, 2 * rate).astype(np.float32)  # 2 s of room noise, 67 dB under the tone
    margin = int(TRIM_MARGIN_SECONDS * rate)
    assert speech_span(np.concatenate([hiss, speech, hiss[: rate // 2]]), rate) == (
        2 * rate - margin,
        3 * rate + margin,
    )
    assert len(trim_silence(np.concatenate([np.zeros(rate // 10, np.float32), speech]), rate)) == rate + rate // 10
    # noise within 40 dB of the speech is not silence: nothing is cut; all zeros stays as it is
    loud_hiss = rng.normal(0.0, 0.02, rate).astype(np.float32)
    assert speech_span(np.concatenate([loud_hiss, speech, loud_hiss]), rate) == (0, 3 * rate)
    assert speech_span(np.zeros(500, np.float32), rate) == (0, 500)
