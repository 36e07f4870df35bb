"""Every console command: `--help` answers at once, without importing TensorFlow (in a fresh interpreter,
since the test process itself has TensorFlow loaded); the argparse commands end a user's mistake with one line
on stderr and exit status 2 (--debug: the traceback)."""

import ast
import errno
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, sine, tiny_bundle, write_wav

# (module, what its --help must say)
COMMANDS = [
    ("asr.cli.train", "Presets (experiment=...)"),
    ("asr.cli.prepare", "asr-prepare: check a corpus"),
    ("asr.cli.transcribe", "--batch-size BATCH_SIZE"),
    ("asr.cli.export", "SavedModel"),
    ("asr.cli.bench", "transcribe"),
    ("asr.cli.sweep_report", "multirun"),
    ("asr.cli.serve", "--max-streams MAX_STREAMS"),
]

SCRIPT = """
import contextlib, importlib, io, sys
for name in sys.argv[1:]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            importlib.import_module(name).main(["--help"])
        except SystemExit:
            pass
    print(name, repr(out.getvalue()), "tensorflow" in sys.modules)
"""


def test_every_command_helps_without_loading_tensorflow():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *(m for m, _ in COMMANDS)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == len(COMMANDS)
    for (module, expected), line in zip(COMMANDS, lines, strict=True):
        name, rest = line.split(" ", 1)
        text, loaded = rest.rsplit(" ", 1)
        assert name == module and expected in ast.literal_eval(text), (module, text[:300])
        assert loaded == "False", f"{module} --help imported TensorFlow"


# One-line errors of the argparse commands, in this process through main(argv): a user's mistake is one line on
# stderr (`<prog>: error: <path>: <problem>; <fix>`) and exit status 2; --debug raises it; a bug keeps its traceback.

MODEL_FIX = "pass a training run directory or its model/ folder as MODEL"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A training run directory holding the bundle of a tiny untrained model (8 kHz)."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    tiny_bundle(run_dir / "model")
    return run_dir


def one_error(capsys) -> str:
    """The single line a command wrote on stderr (nothing on stdout, no traceback)."""
    out = capsys.readouterr()
    assert "Traceback" not in out.err and out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    return lines[0]


def test_transcribe_a_missing_model_or_audio_path_is_one_line(tmp_path, capsys):
    from asr.cli.transcribe import main

    assert main([str(tmp_path / "nothing"), "x.wav"]) == 2
    assert one_error(capsys) == f"asr-transcribe: error: {tmp_path / 'nothing'}: no such file or directory; {MODEL_FIX}"
    assert main([str(tmp_path), str(tmp_path / "a.wav")]) == 2
    assert one_error(capsys) == (
        f"asr-transcribe: error: {tmp_path / 'a.wav'}: no such file or directory; "
        "pass existing audio files, folders or .jsonl / .csv manifests as AUDIO"
    )


def test_transcribe_a_folder_that_is_not_a_bundle_is_one_line(tmp_path, capsys):
    from asr.cli.transcribe import main
    from asr.inference.bundle import BUNDLE_FILE

    write_wav(tmp_path / "a.wav", 8000, sine(8000))
    assert main([str(tmp_path), str(tmp_path / "a.wav")]) == 2
    assert one_error(capsys) == (
        f"asr-transcribe: error: {tmp_path}: not a bundle (no {BUNDLE_FILE} here or in model/); "
        "pass a training run directory or its model/ folder"
    )


def test_transcribe_still_reports_an_unreadable_file_per_file_with_status_1(tiny_run, tmp_path, capsys):
    from asr.cli.transcribe import main

    good = write_wav(tmp_path / "good.wav", 8000, sine(8000))
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert main([str(tiny_run), str(good), str(tmp_path / "bad.wav")]) == 1
    out = capsys.readouterr()
    assert out.out.startswith(f"{good}\t")
    assert out.err.splitlines()[0].startswith(f"asr-transcribe: {tmp_path / 'bad.wav'}: not a readable audio file")
    assert "; 1 failed" in out.err and "Traceback" not in out.err


def test_export_a_missing_model_or_an_existing_out_dir_is_one_line(tiny_run, tmp_path, capsys):
    from asr.cli.export import main

    assert main([str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert one_error(capsys) == f"asr-export: error: {tmp_path / 'nothing'}: no such file or directory; {MODEL_FIX}"
    (tmp_path / "out").mkdir()
    assert main([str(tiny_run), str(tmp_path / "out")]) == 2
    assert one_error(capsys) == (
        f"asr-export: error: {tmp_path / 'out'}: already exists; choose a new OUT_DIR (nothing is overwritten)"
    )
    assert not any((tmp_path / "out").iterdir())


def test_sweep_report_a_missing_file_or_empty_directory_is_one_line(tmp_path, capsys):
    from asr.cli.sweep_report import main

    fix = "pass a multirun directory (hydra.sweep.dir, e.g. multirun/<name>/<date>_<time>)"
    assert main([str(tmp_path / "nothing")]) == 2
    assert one_error(capsys) == f"asr-sweep-report: error: {tmp_path / 'nothing'}: no such file or directory; {fix}"
    (tmp_path / "file").write_text("")
    assert main([str(tmp_path / "file")]) == 2
    assert one_error(capsys) == f"asr-sweep-report: error: {tmp_path / 'file'}: not a directory; {fix}"
    assert main([str(tmp_path)]) == 2
    assert one_error(capsys) == (
        f"asr-sweep-report: error: {tmp_path} holds no job directories (with .hydra/); pass a multirun directory"
    )


def test_sweep_report_an_unwritable_disk_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    from asr.cli import sweep_report

    def full(sweep_dir, out_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "sweep_report.csv"))

    monkeypatch.setattr(sweep_report, "write_sweep_report", full)
    assert sweep_report.main([str(tmp_path)]) == 2
    assert one_error(capsys).startswith(
        f"asr-sweep-report: error: cannot write {tmp_path / 'sweep_report.csv'}: no space left on the device; "
    )
    monkeypatch.setattr(sweep_report, "write_sweep_report", lambda sweep_dir, out_dir: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        sweep_report.main([str(tmp_path)])


def test_bench_transcribe_a_missing_model_is_one_line(tmp_path, capsys):
    from asr.cli.bench import main

    assert main(["--out", str(tmp_path / "b.json"), "transcribe", str(tmp_path / "nothing"), "x.wav"]) == 2
    assert one_error(capsys) == f"asr-bench: error: {tmp_path / 'nothing'}: no such file or directory; {MODEL_FIX}"
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("asr.cli.transcribe", ["{missing}", "x.wav"]),
        ("asr.cli.export", ["{missing}", "{tmp}/out"]),
        ("asr.cli.sweep_report", ["{missing}"]),
        ("asr.cli.bench", ["transcribe", "{missing}", "x.wav"]),
    ],
)
def test_debug_raises_the_error_with_its_traceback(module, args, tmp_path, capsys):
    from asr.errors import UserError

    argv = [a.format(missing=tmp_path / "nothing", tmp=tmp_path) for a in args]
    with pytest.raises(UserError, match="no such file or directory"):
        importlib.import_module(module).main(["--debug", *argv])
    assert capsys.readouterr().err == ""


def test_a_multi_line_message_is_printed_on_one_line(capsys):
    from asr.cli._errors import run_command
    from asr.errors import UserError

    def work() -> int:
        raise UserError("w.h5: cannot load the weights (Unable to open\n  file: truncated); re-export the model")

    assert run_command("asr-x", work) == 2
    assert one_error(capsys) == (
        "asr-x: error: w.h5: cannot load the weights (Unable to open file: truncated); re-export the model"
    )


def test_cache_info_and_prune_report_and_remove_the_least_recently_used_entries(tmp_path, capsys):
    import os
    import time

    from asr.cli.cache import main as cache_main
    from asr.data.extraction import FeatureCache, Job, extract_all
    from asr.data.features import FeatureOptions

    options = FeatureOptions(sample_rate=8000)
    cache = FeatureCache(tmp_path / "cache", options)
    jobs = [Job(str(ROOT / "data" / "wav" / "test" / f"test_0000{i}.wav")) for i in range(3)]
    extract_all(jobs, options, cache)
    entries = [next((tmp_path / "cache").rglob(f"{cache.key(job)}.npy")) for job in jobs]
    for entry, used in zip(entries, (1e9, time.time() - 60, time.time()), strict=True):  # 2001, a minute ago, now
        for path in (entry, entry.with_suffix(".json")):
            os.utime(path, (used, used))
    sizes = [e.stat().st_size + e.with_suffix(".json").stat().st_size for e in entries]
    directory = str(tmp_path / "cache")
    assert cache_main(["--dir", directory, "info"]) == 0
    assert capsys.readouterr().out == f"{directory}: 3 entries, {sum(sizes) / 1e9:.3f} GB\n"
    assert cache_main(["--dir", directory, "prune", "--older-than-days", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"removed 1 entries ({sizes[0] / 1e9:.3f} GB)"
    assert [e.exists() for e in entries] == [False, True, True]
    assert cache_main(["--dir", directory, "prune", "--max-gb", f"{(sizes[2] + 10) / 1e9}"]) == 0  # the newest fits
    assert capsys.readouterr().out.splitlines()[-1] == f"{directory}: 1 entries, {sizes[2] / 1e9:.3f} GB"
    assert [e.exists() for e in entries] == [False, False, True]
    with pytest.raises(SystemExit) as refused:
        cache_main(["--dir", directory, "prune"])
    assert refused.value.code == 2 and "prune needs --max-gb and/or --older-than-days" in capsys.readouterr().err
    assert cache_main(["--dir", str(tmp_path / "nowhere"), "info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asr-cache: error:") and "nowhere" in err and len(err.strip().splitlines()) == 1
