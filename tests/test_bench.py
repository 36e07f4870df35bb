"""The benchmarks of asr.bench through `asr-bench`: train (the naive padded Keras pipeline against asr-train's, the
machine's matmul rate, the FLOP count), scale and lstm. No test asserts a time: only that every figure is there,
positive and finite."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from asr.bench.common import epoch_figures, stack_forward_flop_per_frame
from asr.bench.naive import NAIVE_PAD_VALUE, naive_arrays
from asr.bench.scale import linearity
from asr.cli.bench import main, parse_args
from asr.config import compose

# A tiny model on the first 24 utterances of the embedded corpus: the shape of the run, not its speed.
TINY = ["experiment=demo", "model.num_layers=1", "model.units=16", "augment.speeds=[1.0,0.9]"]


def figures(node: dict, path: str) -> list[tuple[str, float]]:
    """Every number under `node`, with its dotted path."""
    found = []
    for key, value in node.items():
        name = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            found += figures(value, name)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append((name, value))
    return found


@pytest.mark.slow
def test_bench_train_reports_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--out", str(out), "train", *TINY, "--epochs", "2", "--limit", "24"]) == 0
    result = json.loads(out.read_text())
    for side in ("naive", "ours"):
        assert set(result[side]["epoch_seconds"]) == {"median", "min", "max"}
        for key in ("audio_seconds_per_second", "padding_share", "peak_rss_mb"):
            assert key in result[side]
    assert {"audio_seconds_per_second_cached", "audio_seconds_per_second_cold"} <= set(result["features"])
    assert result["features"]["cache_hits"] == result["features"]["cached_files"] == 24
    assert {"matmul_gflops_2048", "matmul_gflops_lstm_step", "cpu_model", "cpus"} <= set(result["machine"])
    assert {"training_gflop_per_epoch", "training_gflops"} <= set(result["model"])
    assert result["preset"] == "demo" and result["overrides"] == TINY and result["date"] and result["cpus"] >= 1
    assert result["data"]["train_utterances"] == 24
    must_be_positive = [
        "train_speedup",
        "flops_utilization",
        "naive.epoch_seconds.median",
        "naive.epoch_seconds.min",
        "naive.epoch_seconds.max",
        "naive.audio_seconds_per_second",
        "naive.peak_rss_mb",
        "naive.padding_share",
        "ours.epoch_seconds.median",
        "ours.audio_seconds_per_second",
        "ours.peak_rss_mb",
        "features.audio_seconds_per_second_cached",
        "features.audio_seconds_per_second_cold",
        "machine.matmul_gflops_2048",
        "machine.matmul_gflops_lstm_step",
        "model.training_gflop_per_epoch",
        "model.training_gflops",
    ]
    numbers = dict(figures(result, ""))
    for name in must_be_positive:
        assert numbers[name] > 0, name
    for name, value in numbers.items():
        assert math.isfinite(value) and value >= 0, name
    table = capsys.readouterr().out
    assert "train_speedup" in table and "seconds per epoch (median)" in table


def test_the_flop_count_of_a_bilstm_stack():
    # layer 1: 2 directions x 2 FLOP x 4 gates x 8 units x (10 inputs + 8); layer 2 sees 16 inputs; logits 16 x 5
    flop, widths = stack_forward_flop_per_frame(10, 8, 2, True, 5)
    assert widths == [10, 16]
    assert flop == 2 * 2 * 4 * 8 * (10 + 8) + 2 * 2 * 4 * 8 * (16 + 8) + 2 * 16 * 5
    assert stack_forward_flop_per_frame(13, 50, 1, False, 29)[0] == 2 * 4 * 50 * 63 + 2 * 50 * 29


def test_epoch_figures_leave_out_the_warm_up():
    assert epoch_figures([30.0, 2.0, 4.0, 3.0]) == {"median": 3.0, "min": 2.0, "max": 4.0}


def test_naive_arrays_pad_to_the_longest_and_carry_the_lengths():
    x, y = naive_arrays([np.ones((3, 13), np.float32), np.ones((5, 13), np.float32)], [[1, 2], [3]])
    assert x.shape == (2, 5, 13) and (x[0, 3:] == NAIVE_PAD_VALUE).all() and (x[1] == 1).all()
    assert y.tolist() == [[3, 1, 2], [5, 3, -1]]


@pytest.mark.parametrize("arguments", [["--epochs", "1"], ["--naive-epochs", "1"], ["--limit", "0"]])
def test_bench_train_refuses_too_few_epochs_or_utterances(arguments, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["train", "experiment=demo", *arguments])
    assert exit_.value.code == 2
    assert "must be >= " in capsys.readouterr().err


def test_bench_train_defaults():
    args = parse_args(["train", "experiment=fsdd", "--epochs", "3"])
    assert (args.overrides, args.epochs, args.naive_epochs, args.limit) == (["experiment=fsdd"], 3, 3, None)


@pytest.mark.slow
def test_bench_scale_reports_time_and_memory_per_corpus_share_and_plots_them(tmp_path, capsys):
    out = tmp_path / "scale.json"
    arguments = ["--out", str(out), "scale", *TINY, "--epochs", "2", "--fractions", "0.5", "2", "--storage", "disk"]
    assert main([*arguments, "--limit", "12"]) == 0
    result = json.loads(out.read_text())
    points = result["runs"]["disk"]["points"]
    assert [(p["fraction"], p["storage"], p["train_utterances"]) for p in points] == [
        (0.5, "disk", 6),
        (2.0, "disk", 24),
    ]
    assert points[1]["feature_bytes"] > 2 * points[0]["feature_bytes"] > 0  # 200 % repeats the 12 utterances
    for name, value in figures(result, ""):
        assert math.isfinite(value), name
    for p in points:
        assert p["epoch_seconds"]["median"] > 0 and p["peak_rss_mb"] > 0 and p["steps_per_epoch"] >= 1
    assert result["peak_rss_growth"]["disk"] > 0
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "s per 100 %" in capsys.readouterr().out


def test_linearity_of_epoch_times():
    def point(fraction, seconds):
        return {"fraction": fraction, "train_seconds_without_validation": {"median": seconds}}

    fit = linearity([point(0.25, 3.0), point(0.5, 5.0), point(1.0, 9.0), point(2.0, 17.0)])
    assert fit["seconds_per_corpus"] == 8.0 and fit["fixed_seconds"] == 1.0 and fit["max_relative_deviation"] == 0.0
    assert fit["seconds_per_fraction"] == [12.0, 10.0, 9.0, 8.5]
    assert linearity([point(0.5, 4.0), point(1.0, 4.0), point(2.0, 16.0)])["max_relative_deviation"] > 0.2


@pytest.mark.slow
def test_bench_lstm_reports_a_flop_rate_per_batch_size_and_variant(tmp_path, capsys):
    out = tmp_path / "lstm.json"
    assert main(["--out", str(out), "lstm", *TINY, "--batch-sizes", "4", "8", "--frames", "12"]) == 0
    result = json.loads(out.read_text())
    rows = {(r["variant"], r["batch"]): r for r in result["rows"]}
    assert set(rows) == {("default", 4), ("default", 8), ("implementation_1", 32), ("unroll", 32), ("xla", 32)}
    for row in rows.values():
        assert row["step_seconds"] > 0 and row["training_gflops"] > 0 and row["utilization"] > 0
        assert math.isfinite(row["matmul_gflops_at_step_shape"]) and row["matmul_gflops_at_step_shape"] > 0
    options = compose(TINY)
    assert result["model"]["input_width"] == options.features.num_features * options.model.stride
    assert result["matmul_gflops_2048"] > 0
    assert "matmul 2048^3" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "lstm"])
def test_a_convolutional_front_end_is_refused_with_the_fix_since_its_flops_go_uncounted(command, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["--out", str(out), command, "experiment=demo", "model.conv_layers=2"]) != 0
    err = capsys.readouterr().err
    assert "model.conv_layers=2: asr-bench counts the FLOPs" in err and "model.conv_layers=0" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.slow  # traces a TensorFlow step function
def test_bench_recognizer_times_the_step_by_step_model_per_chunk_and_skips_a_model_that_cannot_stream(tmp_path):
    import asr
    from asr.bench.recognizer import step_compute
    from asr.data.features import FeatureOptions
    from asr.data.text import Vocabulary
    from asr.inference.bundle import save_bundle
    from asr.model.ctc import CTCModel
    from asr.model.options import ModelOptions

    features, vocab = FeatureOptions(sample_rate=8000, deltas=1, normalize="global"), Vocabulary()
    ones = np.ones(features.num_features, np.float32)
    for name, bidirectional in (("uni", False), ("bi", True)):
        options = ModelOptions(num_layers=1, units=8, stride=3, bidirectional=bidirectional, lookahead=0)
        model = CTCModel(features.num_features, vocab.characters, options, seed=0)
        model.build_for()
        save_bundle(tmp_path / name, model, features, vocab, (0 * ones, ones))
    samples = np.random.default_rng(0).normal(scale=0.1, size=8000 + 100).astype(np.float32)  # 1.0125 s
    found = step_compute(asr.load(tmp_path / "uni"), samples, chunk_ms=200)
    assert found["chunk_ms"] == 200 and found["chunks"] == 6  # five whole chunks of 1600 samples and the rest
    assert 0 < found["ms_median"] <= found["ms_p95"] and found["start_seconds"] > 0
    assert step_compute(asr.load(tmp_path / "bi"), samples) is None
