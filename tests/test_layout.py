"""The package layout holds: imports run one way (data -> decoding -> model -> inference -> training -> serve -> bench
-> cli), no library module imports a command module, only `asr-bench` (asr/cli/bench.py) imports the benchmarks
(asr.bench), and the light modules that configs and --help need never load TensorFlow."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asr"
# Position in the data flow; a module may import only from its own position or an earlier one.
ORDER = {"data": 0, "decoding": 1, "model": 2, "inference": 3, "training": 4, "serve": 5, "bench": 6, "cli": 7}
BENCH_IMPORTER = PACKAGE / "cli" / "bench.py"  # the one module outside asr/bench that may import asr.bench
# Modules that must load without TensorFlow: configs and --help go through them.
LIGHT = [
    "config",
    "system",
    "files",
    "compat",
    "data/options",
    "data/features",
    "data/text",
    "data/datasets",
    "data/audio",
    "data/activity",
    "data/extraction",
    "data/validation",
    "data/preparation",
    "model/options",
    "decoding/lm",  # the language model and its searches (NumPy, flashlight-text): no TensorFlow
    "decoding/lm_search",
    "training/options",
    "training/cluster",  # asr-train reads the cluster before TensorFlow starts
    "inference/options",
    "inference/lite",  # the TFLite runner: LiteRT and NumPy only
    "serve/options",  # asr-serve --help
    "serve/app",  # the server's code loads no model: TensorFlow comes with the recognizer it is given
]


def _imports(path: Path) -> list[str]:
    """Every module a file imports, at any depth of its code (`from a import b`: a, and a.b in case b is a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


def _is_bench(module: str) -> bool:
    """asr.bench or one of its modules (`from asr import bench` included)."""
    return module == "asr.bench" or module.startswith("asr.bench.")


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "asr" and parts[1] in ORDER else None


COMMANDS = {"asr.cli"}
LIBRARY = sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts[:-1])


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_modules_import_no_command_and_only_earlier_stages(path):
    own = path.parent.name if path.parent.name in ORDER else None
    for module in _imports(path):
        assert not any(module == c or module.startswith(f"{c}.") for c in COMMANDS), f"{path} imports {module}"
        if own and _stage(module):
            assert ORDER[_stage(module)] <= ORDER[own], f"{path} ({own}) imports {module}: against the data flow"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_asr_bench_imports_the_benchmarks(path):
    if path == BENCH_IMPORTER or path.relative_to(PACKAGE).parts[0] == "bench":
        return
    for module in _imports(path):
        assert not _is_bench(module), f"{path} imports {module}: only asr/cli/bench.py may import asr.bench"


def test_the_benchmarks_are_a_package_and_asr_bench_imports_them():
    assert not (PACKAGE / "bench.py").exists() and not (PACKAGE / "benchmark.py").exists()
    assert (PACKAGE / "bench" / "__init__.py").exists()
    assert any(_is_bench(m) for m in _imports(BENCH_IMPORTER))


def test_light_modules_load_without_tensorflow():
    names = [f"asr.{n.replace('/', '.')}" for n in LIGHT]
    script = f"import importlib, sys\nfor n in {names!r}:\n    importlib.import_module(n)\nprint(sorted(sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = ast.literal_eval(done.stdout.strip())
    assert "tensorflow" not in loaded and "keras" not in loaded
