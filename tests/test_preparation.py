import json

from conftest import sine, write_wav

from asr.data.features import FeatureOptions
from asr.data.options import AugmentOptions, DataOptions
from asr.data.preparation import prepare_data


def test_auto_characters_come_from_training_and_unseen_ones_are_reported_per_split(tmp_path):
    write_wav(tmp_path / "a.wav", 8000, sine(8000, seconds=1.5))
    splits = {
        # h, t (only in the second) and z, o (only in the last) occur in one training utterance each: rare
        "train": ["Één wrak.", "Het wrak, één keer!", "Geëerd wrak", "geëerde rekken", "zoë"],
        "valid": ["één wrakü"],
        "test": ["wrak ω"],
    }
    for name, texts in splits.items():
        lines = [json.dumps({"audio": "a.wav", "text": t}, ensure_ascii=False) + "\n" for t in texts]
        (tmp_path / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8")
    cfg = DataOptions(root=str(tmp_path), characters="auto", cache=False)
    prepared = prepare_data(cfg, FeatureOptions(sample_rate=8000), 1, AugmentOptions())
    assert prepared.vocab.characters == " adegknrwéë"  # space first, then by code point; accents kept (NFC)
    assert prepared.report["vocabulary"] == prepared.vocab.characters
    assert [e.text for e in prepared.examples["train"]] == ["één wrak", "geëerd wrak", "geëerde rekken"]
    assert [(r["split"], r["kind"]) for r in prepared.report["rejected"]] == [
        ("train", "unknown_characters"),
        ("train", "unknown_characters"),
        ("valid", "unknown_characters"),
        ("test", "unknown_characters"),
    ]
    assert prepared.report["unseen_characters"] == {
        "train": {"h": 1, "o": 1, "t": 1, "z": 1},
        "valid": {"ü": 1},
        "test": {"ω": 1},
    }
