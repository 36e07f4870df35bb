"""Generate the embedded demo corpus: connected-digit utterances synthesized with espeak-ng.

Each utterance is a string of 1-7 spoken digits ("three oh one nine"), synthesized by espeak-ng in one
of eight English accents with one of ~40 human-sounding voice variants, at a random speaking rate and
pitch, resampled to 8 kHz 16-bit mono PCM, trimmed of leading/trailing silence, scaled to a random peak
level and, for ~30% of utterances, mixed with white or pink noise.

Speakers are held out by *variant*: the test and valid splits use variants that never occur in train
(any accent may occur in any split). Every utterance draws its parameters from its own random stream
seeded by (seed, split, index), so growing a split (a larger --n-train) keeps every existing file
byte-identical, and running the script twice produces identical files.

Usage (from the repository root):

    python scripts/make_corpus.py                      # regenerate data/ with the default counts
    python scripts/make_corpus.py --n-train 2000 --out /tmp/digits   # a bigger corpus elsewhere
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from asr.system import usable_cpus

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
ESPEAK = "espeak-ng"
INSTALL_HINT = "install it: apt-get install espeak-ng sox"

# --- Text -------------------------------------------------------------------------------------------
# Digit vocabulary of connected-digit corpora (TIDIGITS style): 0 is read either "oh" or "zero".
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ZERO_WORDS = ("oh", "zero")
# String lengths 1-7 as in TIDIGITS. The weights favour short strings (mean 3.0 digits instead of 4.0)
# so that more utterances fit the repository's 16 MB size budget; every length still occurs often.
LENGTH_WEIGHTS = {1: 4, 2: 4, 3: 3, 4: 2, 5: 1.5, 6: 1, 7: 1}
# Probability of saying "oh" for a 0 (else "zero"): both forms are common in read digit strings.
P_OH = 0.5

# --- Voices -----------------------------------------------------------------------------------------
# English accents shipped with espeak-ng 1.51 (`espeak-ng --voices=en`); mbrola voices are left out
# because they need separately installed mbrola databases.
ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Voice variants (`espeak-ng --voices=variant`, file names !v/<name>) split into disjoint speaker sets.
# Chosen by reading the variant files and measuring a test phrase (pitch, voicing, spectral shape).
# Left out as non-human, whispered, creaky, joke or broken: klatt*, robosoft*, whisper, whisperf,
# Demonic, UniRobot, anikaRobot, announcer, Tweaky, fast, RicishayMax*, kaukovalta, "Mr serious",
# Storm, caleb (meant as a whisper: voicing 0, breath 100; renders exactly like plain klatt), croak,
# Jacky and Lee (third formant removed: muffled), Andy/AnxiousAndy (same, plus exaggerated stress),
# boris and marcelo (extreme formant shifts), sandro (heavy breath noise). Near-duplicates are left out
# too: Gene2 (would leak held-out Gene into train), steph2/steph3, edward2, iven2-4 (no new voice).
# The foreign-named variants (antonio, Diogo, Hugo, Mario, pablo, ...) are tuned for other languages
# and are not used; Michael, Mario and gustave share formants, so only Michael (valid) is kept.
TEST_VARIANTS = ("Annie", "f1", "Gene", "m4", "paul")  # 2 female, 3 male
VALID_VARIANTS = ("Alicia", "Michael", "m6")  # 1 female, 2 male
TRAIN_VARIANTS = (
    # female
    "Andrea", "anika", "aunty", "belinda", "f2", "f3", "f4", "f5", "grandma", "linda", "steph",
    # male
    "Alex", "Denis", "Mike", "adam", "benjamin", "david", "ed", "edward", "grandpa", "iven", "john",
    "m1", "m2", "m3", "m5", "m7", "m8", "max", "norbert", "quincy", "rob", "robert", "travis", "victor",
    # child (pitch 240-390 Hz)
    "zac",
)  # fmt: skip
SPLITS = ("train", "valid", "test")  # position = split index in the per-utterance seed
SPLIT_VARIANTS = {"train": TRAIN_VARIANTS, "valid": VALID_VARIANTS, "test": TEST_VARIANTS}

# --- Synthesis parameters ---------------------------------------------------------------------------
# espeak-ng's default rate is 175 words per minute; 120-210 spans slow careful to brisk reading.
WPM_RANGE = (120, 210)
# espeak-ng's pitch scale is 0-99 with default 50; 25-75 stays natural for every variant.
PITCH_RANGE = (25, 75)
# Peak level as a fraction of full scale: quiet (-12 dBFS) to nearly full (-0.4 dBFS) recordings.
GAIN_RANGE = (0.25, 0.95)
# Share of utterances with added noise and its SNR (against the active speech level): mild to clear.
P_NOISE = 0.3
SNR_DB_RANGE = (12.0, 30.0)
NOISE_KINDS = ("white", "pink")

# --- Audio format -----------------------------------------------------------------------------------
ESPEAK_RATE = 22050  # espeak-ng's fixed output sample rate
SAMPLE_RATE = 8000  # telephone-band corpus: small files, plenty for digits
RESAMPLE_UP, RESAMPLE_DOWN = 160, 441  # 22050 * 160 / 441 = 8000
FULL_SCALE = 32767  # int16 peak
# Silence trimming: 10 ms frames; a frame is speech if its RMS is within 60 dB of the loudest frame.
# espeak-ng pads with digital silence, so a low threshold is safe and keeps weak fricatives ("six",
# "eight" end 35-50 dB below the vowel). It starts speaking at its first sample, so the signal is
# padded with silence first: every file gets exactly MARGIN_S of silence before and after the speech.
FRAME_S = 0.010
SILENCE_DB = -60.0
MARGIN_S = 0.1

# --- Default corpus size ----------------------------------------------------------------------------
# 8 kHz 16-bit mono is 16 kB per second, so the 16 MB budget for data/ holds ~990 s of audio. Measured:
# mean utterance 1.17 s (incl. the 0.2 s of margins) = ~18.8 kB per WAV + ~0.25 kB per manifest line,
# i.e. ~820 utterances in all. valid/test get 100/150 (enough for a stable digit error rate), train the
# rest, leaving ~0.1 MB of headroom (du -sb data = ~15.9 MB).
DEFAULT_COUNTS = {"train": 580, "valid": 100, "test": 150}


@dataclass(frozen=True)
class Task:
    """Everything one worker needs to generate one utterance."""

    seed: int
    split: str
    index: int
    out_dir: Path


@dataclass(frozen=True)
class Record:
    """One manifest line."""

    audio: str
    text: str
    duration: float
    voice: str
    wpm: int
    pitch: int
    gain: float
    snr_db: float | None
    noise: str | None


class CorpusError(RuntimeError):
    """The corpus cannot be generated (missing tool, unknown voice, bad output)."""


def check_espeak() -> None:
    """Fail with an install hint when espeak-ng is not on PATH."""
    if shutil.which(ESPEAK) is None:
        raise CorpusError(f"{ESPEAK} not found on PATH; {INSTALL_HINT}")


def _espeak_voice_list(what: str) -> str:
    """Output of `espeak-ng --voices=<what>`."""
    result = subprocess.run([ESPEAK, f"--voices={what}"], capture_output=True, text=True, check=True)
    return result.stdout


# A row of `espeak-ng --voices=variant`: " 5  variant   --/M   Adam   !v/adam". The file name may
# contain single spaces ("!v/Mr serious"); columns are separated by two or more spaces.
_VARIANT_ROW = re.compile(r"^\s*\d+\s+variant\s+\S*/(?P<gender>[A-Za-z-]+)\s.*?!v/(?P<name>\S+(?: \S+)*)")


def installed_variants() -> dict[str, str]:
    """Variant names espeak-ng knows (the `!v/<name>` file column) mapped to their gender letter."""
    rows = (_VARIANT_ROW.match(line) for line in _espeak_voice_list("variant").splitlines())
    return {m["name"]: m["gender"] for m in rows if m}


def installed_languages() -> set[str]:
    """Language codes of espeak-ng's English voices (second column of `espeak-ng --voices=en`)."""
    lines = _espeak_voice_list("en").splitlines()[1:]
    return {line.split()[1] for line in lines if len(line.split()) > 1}


def check_voices() -> dict[str, str]:
    """Fail loudly if an accent or variant is missing: espeak-ng would silently use its default voice.

    Returns the gender letter of every variant, as espeak-ng lists it.
    """
    variants = installed_variants()
    wanted = [v for split in SPLITS for v in SPLIT_VARIANTS[split]]
    missing = sorted(set(wanted) - variants.keys())
    if missing:
        raise CorpusError(f"espeak-ng lacks voice variant(s) {missing}; see `{ESPEAK} --voices=variant`")
    if len(set(wanted)) != len(wanted):
        raise CorpusError("a voice variant is listed twice: the train/valid/test variant sets must be disjoint")
    languages = installed_languages()
    missing = sorted(set(ACCENTS) - languages)
    if missing:
        raise CorpusError(f"espeak-ng lacks English accent(s) {missing}; see `{ESPEAK} --voices=en`")
    return variants


def draw_text(rng: np.random.Generator) -> str:
    """A random digit string as words, e.g. "three oh one nine"."""
    lengths = np.array(list(LENGTH_WEIGHTS))
    weights = np.array(list(LENGTH_WEIGHTS.values()), dtype=float)
    n = int(rng.choice(lengths, p=weights / weights.sum()))
    digits = rng.integers(0, 10, size=n)
    says_oh = rng.random(n) < P_OH
    words = [ZERO_WORDS[0 if oh else 1] if d == 0 else DIGIT_WORDS[d] for d, oh in zip(digits, says_oh, strict=True)]
    return " ".join(words)


def synthesize(text: str, voice: str, wpm: int, pitch: int) -> np.ndarray:
    """espeak-ng output for `text` as float64 samples in [-1, 1] at ESPEAK_RATE."""
    with tempfile.TemporaryDirectory(prefix="make_corpus_") as tmp:
        path = Path(tmp) / "out.wav"
        cmd = [ESPEAK, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(path), text]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise CorpusError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
        rate, samples = wavfile.read(path)
    if rate != ESPEAK_RATE or samples.dtype != np.int16 or samples.ndim != 1:
        raise CorpusError(f"unexpected espeak-ng output: {rate} Hz, {samples.dtype}, shape {samples.shape}")
    return samples.astype(np.float64) / 32768.0


def frame_rms(x: np.ndarray, frame: int) -> np.ndarray:
    """RMS of consecutive non-overlapping frames (the last partial frame included)."""
    padded = np.pad(x, (0, -len(x) % frame))
    return np.sqrt(np.mean(padded.reshape(-1, frame) ** 2, axis=1))


def speech_frames(x: np.ndarray) -> np.ndarray:
    """Boolean mask over FRAME_S frames: True where the frame is within SILENCE_DB of the loudest."""
    rms = frame_rms(x, round(FRAME_S * SAMPLE_RATE))
    return rms > rms.max() * 10 ** (SILENCE_DB / 20)


def trim_silence(x: np.ndarray) -> np.ndarray:
    """Cut leading/trailing silence so that MARGIN_S of silence remains on each side of the speech."""
    frame = round(FRAME_S * SAMPLE_RATE)
    margin = round(MARGIN_S * SAMPLE_RATE)
    x = np.pad(x, margin)  # espeak-ng output may start with speech at sample 0
    active = np.flatnonzero(speech_frames(x))
    if active.size == 0:
        raise CorpusError("espeak-ng produced silence")
    start = max(0, active[0] * frame - margin)
    end = min(len(x), (active[-1] + 1) * frame + margin)
    return x[start:end]


def make_noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-power white or pink (1/f power) noise of length n."""
    white = rng.standard_normal(n)
    if kind == "white":
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
        scale = np.zeros_like(freqs)
        scale[1:] = 1.0 / np.sqrt(freqs[1:])  # 1/f power; no DC offset
        noise = np.fft.irfft(spectrum * scale, n=n)
    return noise / np.sqrt(np.mean(noise**2))


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x plus noise scaled to snr_db below the mean power of x's speech frames."""
    frame = round(FRAME_S * SAMPLE_RATE)
    rms = frame_rms(x, frame)
    speech_power = np.mean(rms[speech_frames(x)] ** 2)
    return x + noise * np.sqrt(speech_power / 10 ** (snr_db / 10))


def to_int16(x: np.ndarray, peak: float) -> np.ndarray:
    """Scale x so that its absolute peak is `peak` of full scale and quantize to int16."""
    return np.round(x * (peak * FULL_SCALE / np.max(np.abs(x)))).astype(np.int16)


def wav_name(split: str, index: int) -> str:
    """Manifest-relative path of one utterance's WAV file."""
    return f"wav/{split}/{split}_{index:05d}.wav"


def make_utterance(task: Task) -> Record:
    """Draw, synthesize, process and write one utterance; return its manifest record."""
    rng = np.random.default_rng(np.random.SeedSequence([task.seed, SPLITS.index(task.split), task.index]))
    text = draw_text(rng)
    accent = ACCENTS[rng.integers(len(ACCENTS))]
    variants = SPLIT_VARIANTS[task.split]
    voice = f"{accent}+{variants[rng.integers(len(variants))]}"
    wpm = int(rng.integers(WPM_RANGE[0], WPM_RANGE[1] + 1))
    pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    gain = round(float(rng.uniform(*GAIN_RANGE)), 3)
    noisy = bool(rng.random() < P_NOISE)
    kind = NOISE_KINDS[rng.integers(len(NOISE_KINDS))]
    snr_db = round(float(rng.uniform(*SNR_DB_RANGE)), 1)

    audio = synthesize(text, voice, wpm, pitch)
    audio = trim_silence(resample_poly(audio, RESAMPLE_UP, RESAMPLE_DOWN))
    if noisy:
        audio = add_noise(audio, make_noise(rng, kind, len(audio)), snr_db)
    samples = to_int16(audio, gain)

    rel = wav_name(task.split, task.index)
    path = task.out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, SAMPLE_RATE, samples)
    return Record(
        audio=rel,
        text=text,
        duration=round(len(samples) / SAMPLE_RATE, 3),
        voice=voice,
        wpm=wpm,
        pitch=pitch,
        gain=gain,
        snr_db=snr_db if noisy else None,
        noise=kind if noisy else None,
    )


def generate_split(split: str, count: int, seed: int, out_dir: Path, jobs: int) -> list[Record]:
    """Generate `count` utterances of one split in parallel; records come back in index order."""
    tasks = [Task(seed, split, i, out_dir) for i in range(count)]
    if jobs <= 1:
        return [make_utterance(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(make_utterance, tasks, chunksize=8))


def remove_stale(split: str, count: int, out_dir: Path) -> None:
    """Delete WAVs of this split with an index >= count, left over from a bigger earlier run."""
    pattern = re.compile(rf"{split}_(\d{{5}})\.wav")
    for path in sorted((out_dir / "wav" / split).glob(f"{split}_*.wav")):
        match = pattern.fullmatch(path.name)
        if match and int(match.group(1)) >= count:
            log.info("removing stale %s", path)
            path.unlink()


def write_manifest(path: Path, records: Sequence[Record]) -> None:
    """One JSON object per line, keys in Record field order."""
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(asdict(record), ensure_ascii=True) + "\n")


def tree_bytes(root: Path) -> int:
    """Total size of the regular files below root (what `du -sb` counts, minus directory entries)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def readme_text(
    counts: dict[str, int],
    records: dict[str, list[Record]],
    seed: int,
    data_bytes: int,
    genders: dict[str, str],
) -> str:
    """data/README.md describing the generated corpus; `genders` maps variant -> espeak-ng's M/F."""
    total_s = {s: sum(r.duration for r in records[s]) for s in SPLITS}
    rows = "\n".join(
        f"| {s} | {counts[s]} | {total_s[s] / 60:.1f} min | "
        f"{total_s[s] / max(counts[s], 1):.2f} s | {len(SPLIT_VARIANTS[s])} | "
        f"{sum(r.snr_db is not None for r in records[s])} |"
        for s in SPLITS
    )
    variants = "\n".join(
        f"- **{s}** ({len(SPLIT_VARIANTS[s])}): " + ", ".join(f"{v} ({genders[v]})" for v in SPLIT_VARIANTS[s])
        for s in SPLITS
    )
    n_variants = sum(len(SPLIT_VARIANTS[s]) for s in SPLITS)
    accents = ", ".join(ACCENTS)
    wpm = f"{WPM_RANGE[0]}-{WPM_RANGE[1]}"
    pitch = f"{PITCH_RANGE[0]}-{PITCH_RANGE[1]}"
    gain = f"{GAIN_RANGE[0]}-{GAIN_RANGE[1]}"
    snr = f"{SNR_DB_RANGE[0]:g}-{SNR_DB_RANGE[1]:g}"
    command = (
        f"python scripts/make_corpus.py --seed {seed} --n-train {counts['train']} "
        f"--n-valid {counts['valid']} --n-test {counts['test']}"
    )
    first = next((records[s][0] for s in SPLITS if records[s]), None)
    example = json.dumps(asdict(first)) if first else "{}"
    return f"""# Demo corpus: synthetic connected digits

Small speech corpus embedded in the repository so that training, evaluation and the tests run without
downloading anything. **All audio is generated: it is speech-synthesizer output from
[espeak-ng](https://github.com/espeak-ng/espeak-ng)**, not recordings of people. It is meant for
smoke tests and demos; a model trained on it will not recognize real speech well.

## Content

- Connected-digit strings of 1-7 digits, e.g. `three oh one nine`; the words are `zero` ... `nine`,
  and the digit 0 is spoken as `oh` or `zero` (chosen at random per digit). Transcripts are lower case
  `a-z` and single spaces.
- 8 kHz, 16-bit PCM, mono WAV, with {MARGIN_S:g} s of silence (or noise) before and after the speech.
- Eight English accents x {n_variants} human-sounding espeak-ng voice variants.
  Accents: {accents}.
- Per utterance, at random: speaking rate {wpm} words per minute, pitch {pitch} (espeak-ng's 0-99
  scale), peak level {gain} of full scale; {P_NOISE:.0%} of utterances get white or pink noise at
  {snr} dB SNR (relative to the speech level).

| split | utterances | audio | mean duration | variants | with noise |
|-------|-----------:|------:|--------------:|---------:|-----------:|
{rows}

Durations include the margins. The WAV files and manifests take {data_bytes} bytes
({data_bytes / 1e6:.2f} MB); the whole folder stays under 16 MB (`du -sb data`).

## Speaker (voice variant) hold-out

The splits use disjoint sets of espeak-ng voice variants, so valid and test measure generalization to
unseen voices; each utterance combines one of its split's variants with any of the eight accents.
Gender as espeak-ng lists it (zac is a child-like voice):

{variants}

Variants that sound robotic, whispered, creaky or muffled (klatt*, robosoft*, whisper*, croak, Storm,
UniRobot, ...) and near-duplicates of the held-out ones are not used; see the comment above
`TEST_VARIANTS` in `scripts/make_corpus.py`. The script checks that every variant it uses is
installed, because espeak-ng silently falls back to its default voice on an unknown name.

## Files

- `train.jsonl`, `valid.jsonl`, `test.jsonl`: one JSON object per line, e.g. the first one:

  ```json
  {example}
  ```

  `audio` is relative to the manifest; `duration` is in seconds; `voice` is the espeak-ng `-v`
  argument (accent+variant); `wpm` and `pitch` are the espeak-ng `-s` and `-p` values; `gain` is the
  peak level; `snr_db` and `noise` describe the added noise (both null when none).
- `wav/<split>/<split>_NNNNN.wav`: the audio.

## Regenerating or growing it

Needs `espeak-ng` (1.51 was used; `apt-get install espeak-ng`) and Python with numpy and scipy.
Generated from the repository root with:

```sh
{command}
```

Output is deterministic: every utterance draws its parameters from its own random stream seeded by
(seed, split, index), so rerunning gives byte-identical files (with the same espeak-ng, numpy and
scipy versions) whatever `--jobs` is. A larger `--n-train` (or `--n-valid`, `--n-test`) keeps every
existing file and manifest line and appends new ones, e.g. `--n-train 2000 --out /tmp/digits` for a
bigger training set outside the repository (mind its size budget); a smaller count deletes the
surplus WAVs. The variant sets are fixed in the script, so growing never mixes voices across splits.
"""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO_ROOT / "data", help="output folder (default: data/)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    for split in SPLITS:
        p.add_argument(
            f"--n-{split}",
            type=int,
            default=DEFAULT_COUNTS[split],
            help=f"{split} utterances (default: {DEFAULT_COUNTS[split]})",
        )
    p.add_argument("--jobs", type=int, default=usable_cpus(), help="parallel workers (default: every usable CPU)")
    args = p.parse_args(argv)
    if min(args.n_train, args.n_valid, args.n_test) < 0 or args.seed < 0:
        p.error("counts and seed must be non-negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the corpus and print a summary."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        check_espeak()
        genders = check_voices()
    except (CorpusError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    counts = {"train": args.n_train, "valid": args.n_valid, "test": args.n_test}
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    records: dict[str, list[Record]] = {}
    for split in SPLITS:
        log.info("generating %d %s utterances with %d workers", counts[split], split, args.jobs)
        records[split] = generate_split(split, counts[split], args.seed, out_dir, args.jobs)
        remove_stale(split, counts[split], out_dir)
        write_manifest(out_dir / f"{split}.jsonl", records[split])
    data_bytes = tree_bytes(out_dir / "wav") + sum((out_dir / f"{s}.jsonl").stat().st_size for s in SPLITS)
    (out_dir / "README.md").write_text(readme_text(counts, records, args.seed, data_bytes, genders), encoding="utf-8")
    elapsed = time.monotonic() - started
    for split in SPLITS:
        durations = [r.duration for r in records[split]]
        mean = float(np.mean(durations)) if durations else 0.0
        n_variants = len(SPLIT_VARIANTS[split])
        print(f"{split:5s}: {counts[split]:5d} utterances, mean {mean:.2f} s, {n_variants} variants")
    print(f"total {tree_bytes(out_dir) / 1e6:.2f} MB in {out_dir}, {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
