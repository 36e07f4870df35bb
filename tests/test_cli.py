"""Every console command: `--help` answers at once, without importing TensorFlow (in a fresh interpreter,
since the test process itself has TensorFlow loaded)."""

import ast
import subprocess
import sys

# (module, what its --help must say)
COMMANDS = [
    ("asr.cli.train", "Presets (experiment=...)"),
    ("asr.cli.prepare", "asr-prepare: check a corpus"),
    ("asr.cli.transcribe", "--batch-size BATCH_SIZE"),
    ("asr.cli.export", "SavedModel"),
    ("asr.cli.bench", "transcribe"),
    ("asr.cli.sweep_report", "multirun"),
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
