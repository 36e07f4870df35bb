"""The inference bundle: weights plus one JSON file with everything needed to turn audio into text."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.data.features import FeatureOptions, apply_global_stats, extract
from asr.data.text import Vocabulary
from asr.decoding.lm import LanguageModelError, NgramLM
from asr.decoding.lm_search import LMDecoder, LMWeights
from asr.errors import UserError
from asr.files import replace_folder, staging_folder
from asr.model.ctc import CTCModel

BUNDLE_FILE = "bundle.json"
WEIGHTS_FILE = "model.weights.h5"
LM_FILE = "lm.arpa"  # the character language model, when the bundle has one
WORDS_FILE = "words.arpa"  # the word language model, when the bundle has one (lm.kind=word)
FORMAT = "asr-bundle"
VERSION = 1
# The longest utterance a bundle written before `max_seconds` was recorded is assumed to have been trained on
# (the common upper end of ASR training clips); longer recordings are transcribed in pieces.
DEFAULT_MAX_SECONDS = 20.0

# Bytes read at each end of an ARPA file to see that it is whole without parsing it (the header and the
# "\\end\\" line are within the first and last few lines).
ARPA_PEEK_BYTES = 4096


class BundleError(UserError):
    """A directory is not a loadable bundle; the message says which file and what is wrong."""


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the model with its weights, and how to make its inputs and read its outputs."""

    model: CTCModel
    features: FeatureOptions
    vocab: Vocabulary
    cmvn: tuple[np.ndarray, np.ndarray] | None = None  # global mean and std per feature, when used
    max_seconds: float = DEFAULT_MAX_SECONDS  # the longest training utterance; longer audio is cut at pauses
    lm: LMDecoder | None = None  # the character language model and its beam search, when trained with one
    # Median silence before and after the speech of the training utterances, in seconds (asr.data.activity);
    # the pieces of a long recording get as much. None in bundles written before it was measured.
    margins: tuple[float, float] | None = None
    # Where the bundle's language model is and how it is weighted (bundle.json's "language_model"), read or not:
    # load_bundle(path, language_model=False) leaves `lm` None and the ARPA file unparsed until LMSource.load().
    lm_source: LMSource | None = None

    @property
    def seconds_per_step(self) -> float:
        """Seconds of audio per model output step (stride feature frames)."""
        return self.model.stride * self.features.frame_step / self.features.sample_rate

    def featurize(self, signal: np.ndarray) -> np.ndarray:
        """Waveform at the bundle's rate -> the model's normalized input [frames, F]."""
        feats = extract(signal, self.features)
        return feats if self.cmvn is None else apply_global_stats(feats, self.cmvn)


def save_bundle(
    directory: Path,
    model: CTCModel,
    features: FeatureOptions,
    vocab: Vocabulary,
    cmvn: tuple[np.ndarray, np.ndarray] | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    lm: LMDecoder | None = None,
    margins: tuple[float, float] | None = None,
) -> Path:
    """Write `bundle.json`, the weights and the language model (`lm.arpa`, with `lm`) into `directory`;
    returns the directory.

    Both files are written into a temporary folder beside it, which then replaces `directory` (an earlier
    bundle of the same run, e.g. before a resume): a kill never leaves a half-written bundle there.
    """
    staging = staging_folder(directory)
    staging.mkdir()
    model.save_weights(staging / WEIGHTS_FILE)
    words = lm is not None and lm.words is not None and lm.weights.word > 0
    if lm is not None:
        lm.lm.write_arpa(staging / LM_FILE)
    if words:
        lm.words.write_arpa(staging / WORDS_FILE)
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "sample_rate": features.sample_rate,
        "features": features.to_dict(),
        "vocabulary": vocab.characters,
        "fold_accents": vocab.fold_accents,
        "blank_index": vocab.blank_index,
        "model": model.get_config(),
        "normalization": None if cmvn is None else {"mean": cmvn[0].tolist(), "std": cmvn[1].tolist()},
        "max_seconds": math.ceil(float(max_seconds) * 1000) / 1000,  # rounded up: that utterance is not "longer"
    }
    if margins is not None:
        spec["silence_margins"] = [float(m) for m in margins]
    if lm is not None:
        spec["language_model"] = {
            "file": LM_FILE,
            "unit": "character",
            "order": lm.lm.order,
            "alpha": lm.weights.alpha,
            "beta": lm.weights.beta,
            "beam_width": lm.beam_width,
        }
    if words:
        spec["language_model"]["words"] = {
            "file": WORDS_FILE,
            "order": lm.words.order,
            "weight": lm.weights.word,
            "unknown_penalty": lm.weights.unknown,
        }
    (staging / BUNDLE_FILE).write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    replace_folder(staging, directory)
    return directory


def find_bundle(path: Path) -> Path:
    """The bundle directory for a bundle dir or a training run dir (which holds one in `model/`)."""
    for candidate in (path, path / "model"):
        if (candidate / BUNDLE_FILE).is_file():
            return candidate
    raise BundleError(
        f"{path}: not a bundle (no {BUNDLE_FILE} here or in model/); pass a training run directory or its model/ folder"
    )


def read_spec(directory: Path, content: bytes | None = None) -> dict:
    """Parse and check bundle.json (`content`: its bytes, where the caller has read them already)."""
    path = directory / BUNDLE_FILE
    try:
        spec = json.loads((path.read_bytes() if content is None else content).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: unreadable bundle file ({e}); re-export the model") from e
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise BundleError(f"{path}: not an asr bundle (format field is not {FORMAT!r})")
    if spec.get("version") != VERSION:
        raise BundleError(f"{path}: bundle version {spec.get('version')!r}, this asr reads version {VERSION}")
    missing = [k for k in ("features", "vocabulary", "model") if k not in spec]
    if missing:
        raise BundleError(f"{path}: bundle lacks {', '.join(missing)}; re-export the model")
    return spec


@dataclass(frozen=True)
class LMSource:
    """A bundle's language model as bundle.json describes it, not yet read."""

    spec: dict  # bundle.json's "language_model"
    directory: Path  # the bundle's folder

    @property
    def path(self) -> Path:
        """The character model's ARPA file."""
        return self.directory / str(self.spec.get("file", LM_FILE))

    def load(self) -> LMDecoder:
        """The language model's decoder; BundleError naming the file when it cannot be read."""
        return _read_lm(self.spec, self.directory)

    def weights(self) -> LMWeights:
        """How much the language model counts (bundle.json's figures; the ARPA file unread)."""
        try:
            return _lm_weights(self.spec)
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(
                f"{self.directory / BUNDLE_FILE}: invalid language_model settings ({e}); re-export the model"
            ) from e

    def problem(self) -> str | None:
        """Why the ARPA file is unusable, by a quick look at its ends (the \\data\\ header, and the \\end\\ line
        that a cut-off file lacks), or None when it looks whole."""
        try:
            with self.path.open("rb") as f:
                head = f.read(ARPA_PEEK_BYTES)
                f.seek(max(f.seek(0, os.SEEK_END) - ARPA_PEEK_BYTES, 0))
                tail = f.read()
        except OSError as e:
            return f"cannot read it ({e})"
        if b"\\data\\" not in head:
            return "no \\data\\ header: not an ARPA file"
        if b"\\end\\" not in tail:
            return "no \\end\\ line: the file is cut off"
        return None


def load_bundle(path: Path, language_model: bool = True) -> Bundle:
    """Load a bundle (or a run dir's model/) without Hydra or the training config; with `language_model` False its
    language model is left unread (Bundle.lm_source says where it is)."""
    directory = find_bundle(Path(path))
    spec = read_spec(directory)
    try:
        features = FeatureOptions(**spec["features"])
        # bundles written before accent folding became an option always folded accents
        vocab = Vocabulary(spec["vocabulary"], bool(spec.get("fold_accents", True)))
        model = CTCModel.from_config(spec["model"])
    except (TypeError, ValueError) as e:
        raise BundleError(f"{directory / BUNDLE_FILE}: invalid settings ({e})") from e
    if model.characters != vocab.characters or spec.get("blank_index") != vocab.blank_index:
        raise BundleError(f"{directory / BUNDLE_FILE}: vocabulary and model disagree")
    cmvn = read_cmvn(spec.get("normalization"), features, directory / BUNDLE_FILE)
    model.build_for()
    weights = directory / WEIGHTS_FILE
    try:
        model.load_weights(weights)
    except Exception as e:  # h5py / Keras raise many kinds for a missing, truncated or foreign file
        raise BundleError(f"{weights}: cannot load the weights ({e}); re-export the model") from e
    max_seconds = spec.get("max_seconds", DEFAULT_MAX_SECONDS)
    if not isinstance(max_seconds, int | float) or max_seconds <= 0:
        raise BundleError(f"{directory / BUNDLE_FILE}: max_seconds must be a positive number, got {max_seconds!r}")
    margins = spec.get("silence_margins")
    if margins is not None and not (
        isinstance(margins, list) and len(margins) == 2 and all(isinstance(m, int | float) and m >= 0 for m in margins)
    ):
        raise BundleError(f"{directory / BUNDLE_FILE}: silence_margins must be two seconds >= 0, got {margins!r}")
    lm_spec = spec.get("language_model")
    if lm_spec is not None and not isinstance(lm_spec, dict):
        raise BundleError(f"{directory / BUNDLE_FILE}: language_model must be an object, got {lm_spec!r}")
    source = None if lm_spec is None else LMSource(lm_spec, directory)
    lm = source.load() if source is not None and language_model else None
    return Bundle(
        model, features, vocab, cmvn, float(max_seconds), lm, None if margins is None else tuple(margins), source
    )


def _read_lm(spec: dict | None, directory: Path) -> LMDecoder | None:
    """The bundle's language model decoder, or None when it has none."""
    if spec is None:
        return None
    try:
        words = spec.get("words")
        weights = _lm_weights(spec)
        lm = NgramLM.read_arpa(directory / str(spec.get("file", LM_FILE)))
        word_lm = NgramLM.read_arpa(directory / str(words.get("file", WORDS_FILE))) if words else None
        return LMDecoder(lm, weights, int(spec.get("beam_width", LMDecoder.beam_width)), words=word_lm)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(
            f"{directory / BUNDLE_FILE}: invalid language_model settings ({e}); re-export the model"
        ) from e
    except LanguageModelError as e:
        raise BundleError(f"{e} (the bundle's language model); copy the bundle again, or pass --lm none") from e


def _lm_weights(spec: dict) -> LMWeights:
    """The weights of bundle.json's "language_model" (KeyError, TypeError or ValueError when they are wrong)."""
    words = spec.get("words")
    return LMWeights(
        float(spec["alpha"]),
        float(spec["beta"]),
        float(words["weight"]) if words else 0.0,
        float(words["unknown_penalty"]) if words else 0.0,
    )


def read_cmvn(spec: dict | None, features: FeatureOptions, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Global normalization statistics from bundle.json, checked against the feature settings."""
    needed = features.normalize in ("global", "both")
    if spec is None:
        if needed:
            raise BundleError(f"{path}: normalize={features.normalize} but no normalization statistics")
        return None
    try:
        mean, std = np.asarray(spec["mean"], np.float32), np.asarray(spec["std"], np.float32)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{path}: unreadable normalization statistics ({e})") from e
    if mean.shape != (features.num_features,) or std.shape != mean.shape or not (std > 0).all():
        raise BundleError(f"{path}: normalization statistics do not fit {features.num_features} features")
    return mean, std
