"""`asr-bench pocketsphinx`: CMU PocketSphinx out of the box on a manifest's files, and a model of ours on the same
files, scored alike (the same references and normalization, the project's corpus CER and WER)."""

import json
import sys

import pytest
from conftest import SHARED_DATA, require_shared_data, tiny_bundle

from asr.bench.pocketsphinx import (
    PocketSphinxMissing,
    bench_pocketsphinx,
    decode_pocketsphinx,
    pocketsphinx_decoder,
    scored_items,
)
from asr.data.text import error_rates

SENTENCE = "She had your dark suit in greasy wash water all year."  # LDC93S1's transcript
LDC93S1 = SHARED_DATA / "ldc93s1"


def _manifest(path, entries: list[dict]):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


@pytest.fixture
def ldc93s1_manifest(tmp_path):
    require_shared_data()
    return _manifest(
        tmp_path / "ldc.jsonl",
        [
            {"audio": str(LDC93S1 / "LDC93S1.wav"), "text": SENTENCE},
            {"audio": str(LDC93S1 / "LDC93S1_pcms16le_2_44100.wav"), "text": SENTENCE},  # resampled to 16 kHz
            {"audio": str(LDC93S1 / "LDC93S1.wav"), "text": None},  # no reference: not scored
        ],
    )


def test_the_first_entries_with_a_transcript_are_scored_and_the_others_counted(tmp_path):
    manifest = _manifest(
        tmp_path / "m.jsonl",
        [{"audio": "a.wav", "text": "one"}, {"audio": "b.wav", "text": None}, {"audio": "c.wav", "text": "three"}],
    )
    items, left_out = scored_items(manifest, 2)
    assert [(u.audio.name, u.text) for u in items] == [("a.wav", "one")] and left_out == 1
    items, left_out = scored_items(manifest, None)
    assert [u.text for u in items] == ["one", "three"] and left_out == 1


def test_without_pocketsphinx_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import pocketsphinx raises ImportError
    with pytest.raises(PocketSphinxMissing, match=r"pocketsphinx is not installed; pip install pocketsphinx==5\.1\.1"):
        pocketsphinx_decoder()


def test_pocketsphinx_hears_the_ldc93s1_sentence(ldc93s1_manifest):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install pocketsphinx==5.1.1)")
    result = bench_pocketsphinx(ldc93s1_manifest)
    assert (result["files"], result["without_transcript"], result["unreadable"]) == (2, 1, 0)
    assert result["audio_seconds"] == pytest.approx(2 * 46797 / 16000, abs=0.01)
    texts = [s["pocketsphinx"] for s in result["samples"]]
    # PocketSphinx 5.1.1's reading of the 16 kHz file: "she had to duck soon greasy watch for all year"
    assert texts[0].startswith("she had") and "greasy" in texts[0].split() and texts[0].endswith("all year")
    assert texts[1].startswith("she had") and texts[1].endswith("all year")
    figures = result["systems"]["pocketsphinx"]
    refs = [s["ref"] for s in result["samples"]]
    assert refs == ["she had your dark suit in greasy wash water all year"] * 2
    expected = error_rates(refs, texts)
    assert (figures["cer"], figures["wer"]) == (round(expected["ler"], 5), round(expected["wer"], 5))
    assert 0 < figures["cer"] < 0.6 and figures["n"] == 2 and figures["version"] == "5.1.1"


def test_a_bit_exact_16_bit_file_reaches_pocketsphinx_unchanged():
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install pocketsphinx==5.1.1)")
    import soundfile

    require_shared_data()
    from asr.data.audio import load_audio

    pcm, _ = soundfile.read(LDC93S1 / "LDC93S1.wav", dtype="int16")
    decoder = pocketsphinx_decoder()
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    direct = decoder.hyp().hypstr
    # PocketSphinx's transcript changes with the last bit of the samples (x 32767 and truncation read otherwise)
    assert decode_pocketsphinx(decoder, load_audio(LDC93S1 / "LDC93S1.wav", 16000)) == direct


@pytest.mark.slow  # TensorFlow, a model and the recognizer: tens of seconds on a loaded 2-core machine
def test_our_model_is_scored_on_the_same_files_and_references(ldc93s1_manifest, tmp_path):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install pocketsphinx==5.1.1)")
    tiny_bundle(tmp_path / "run" / "model", sample_rate=16000)
    result = bench_pocketsphinx(ldc93s1_manifest, limit=1, model=tmp_path / "run")
    assert set(result["systems"]) == {"pocketsphinx", "asr"} and result["files"] == 1
    ours = result["systems"]["asr"]
    sample = result["samples"][0]
    expected = error_rates([sample["ref"]], [sample["asr"]])
    assert (ours["cer"], ours["n"], ours["model"]) == (round(expected["ler"], 5), 1, str(tmp_path / "run"))
    assert ours["language_model"] is False and ours["wall_seconds"] >= ours["decode_seconds"] > 0


@pytest.mark.slow  # asr-bench reports the machine through TensorFlow
def test_asr_bench_pocketsphinx_writes_json_and_a_table(ldc93s1_manifest, tmp_path, capsys):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install pocketsphinx==5.1.1)")
    from asr.cli.bench import main

    out = tmp_path / "b.json"
    assert main(["--out", str(out), "pocketsphinx", str(ldc93s1_manifest), "--limit", "1"]) == 0
    written = json.loads(out.read_text())
    assert written["files"] == 1 and set(written["systems"]) == {"pocketsphinx"} and "machine" in written
    table = capsys.readouterr().out.splitlines()[-3:]
    cer = written["systems"]["pocketsphinx"]["cer"]
    assert table[0] == "| system | CER | WER | files | wall s | RTF |"
    assert table[2].startswith(f"| pocketsphinx | {100 * cer:.1f} % |")


def test_asr_bench_pocketsphinx_mistakes_are_one_line(tmp_path, capsys):
    from asr.cli.bench import main

    assert main(["pocketsphinx", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"asr-bench: error: {tmp_path / 'none.jsonl'}: no such file or directory; pass a manifest (.jsonl / .csv) of "
        "audio files with their transcripts\n"
    )
    manifest = _manifest(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "x"}])
    with pytest.raises(SystemExit) as raised:
        main(["pocketsphinx", str(manifest), "--limit", "0"])
    assert raised.value.code == 2 and "--limit must be >= 1, got 0" in capsys.readouterr().err
    assert main(["pocketsphinx", str(manifest), "--model", "nomodel"]) == 2
    assert capsys.readouterr().err.startswith("asr-bench: error: nomodel: no such file or directory, nor a shipped")
