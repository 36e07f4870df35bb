"""asr-transcribe options: beam, n-best, timestamps, manifests with references, directories."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

BIN = Path(sys.executable).parent


def transcribe(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([str(BIN / "asr-transcribe"), *args], capture_output=True, text=True, env=env)


def test_beam_nbest_and_timestamps(demo_run):
    wav = str(ROOT / "data" / "wav" / "test" / "test_00003.wav")
    done = transcribe(str(demo_run / "model"), wav, "--json", "--beam-width", "8", "--n-best", "3", "--timestamps")
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout)
    assert record["text"] == record["nbest"][0]["text"]
    assert len(record["nbest"]) == 3
    assert record["nbest"][0]["score"] >= record["nbest"][1]["score"] >= record["nbest"][2]["score"]
    words = record["words"]
    assert [w["word"] for w in words] == record["text"].split()
    assert all(0 <= w["start"] < w["end"] <= record["duration_s"] + 0.05 for w in words)
    assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:], strict=False))
    assert "(RTF " in done.stderr


def test_csv_manifest_scores_against_references(demo_run, tmp_path):
    rows = [json.loads(line) for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()[:5]]
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["wav_filename", "wav_filesize", "transcript"])
        for r in rows:
            writer.writerow([str(ROOT / "data" / r["audio"]), 0, r["text"]])
    done = transcribe(str(demo_run), str(manifest), "--score")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 6 and lines[-1].startswith("scored 5 files: LER ")
    assert [line.split("\t")[3] for line in lines[:5]] == [r["text"] for r in rows]


def test_directory_input_and_bad_arguments(demo_run, tmp_path):
    done = transcribe(str(demo_run), str(ROOT / "data" / "wav" / "valid"))
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 100
    assert "transcribed 100 files" in done.stderr
    assert transcribe(str(tmp_path), "x.wav").returncode == 2
    assert transcribe(str(demo_run), "x.wav", "--beam-width", "2", "--n-best", "3").returncode == 2
