"""tf.distribute: each replica's share of a batch, and whole trainings under strategies compared with one device
(mirrored over 2 logical CPUs, 2 worker processes by TF_CONFIG, a 2-task submitit job)."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr.data.batching import EpochPlan, epoch_plans, join_small
from asr.training.distribute import replica_plans

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# One small epoch on 24 of the embedded corpus's utterances: no dropout, masks or speeds, so that the only
# difference between one device and several is how the sums are split.
TINY = [
    "experiment=demo",
    "augment=none",
    "model.dropout=0",
    "model.num_layers=1",
    "model.units=16",
    "trainer.batch_size=8",
    "trainer.epochs=1",
    "trainer.verbose=0",
]
# Losses are sums over replicas in another order than on one device: float32 rounding, ~1e-7 relative seen.
LOSS_RTOL = 1e-5


def test_replica_pieces_cover_each_batch_once_in_replica_order():
    plans = [EpochPlan([np.arange(5), np.arange(5, 9)], np.zeros(9, np.int64), 0.0, np.arange(1, 10))]
    first = replica_plans(plans, 2, 0, 1)[0].batches
    second = replica_plans(plans, 2, 1, 1)[0].batches
    assert [b.tolist() for b in first] == [[0, 1, 2], [5, 6]]
    assert [b.tolist() for b in second] == [[3, 4], [7, 8]]
    both = replica_plans(plans, 2, 0, 2)[0].batches  # one pipeline feeding both replicas: pieces alternate
    assert [b.tolist() for b in both] == [[0, 1, 2], [3, 4], [5, 6], [7, 8]]
    with pytest.raises(ValueError, match="a batch of 4 utterances cannot feed 5 replicas"):
        replica_plans(plans, 5, 0, 1)


def test_batches_too_small_for_the_replicas_are_joined_to_a_neighbour():
    plan = [np.array([0]), np.array([1, 2, 3]), np.array([4, 5]), np.array([6])]
    joined = join_small(plan, 2)
    assert [b.tolist() for b in joined] == [[0, 1, 2, 3], [4, 5], [6, 4, 5]] or [b.tolist() for b in joined] == [
        [0, 1, 2, 3],
        [4, 5, 6],
    ]
    assert sorted(np.concatenate(joined).tolist()) == list(range(7))
    assert all(len(b) >= 2 for b in joined)


def test_every_epoch_has_the_same_step_count_and_no_batch_below_the_replica_count():
    from asr.data.validation import Example

    rng = np.random.default_rng(0)
    examples = [
        Example(f"u{i}", np.zeros((int(n), 2), np.float32), np.array([1], np.int32), "a")
        for i, n in enumerate(rng.integers(5, 200, 61))
    ]
    plans = epoch_plans(examples, 8, 0, True, 4, batch_frames=600, min_items=3)
    assert len({len(p.batches) for p in plans}) == 1
    assert all(len(b) >= 3 for p in plans for b in p.batches)
    assert all(sorted(np.concatenate(p.batches).tolist()) == list(range(61)) for p in plans)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    """train/valid/test manifests of 24/8/4 embedded-corpus utterances, with absolute audio paths."""
    root = tmp_path_factory.mktemp("tiny")
    for split, count in (("train", 24), ("valid", 8), ("test", 4)):
        lines = (ROOT / "data" / f"{split}.jsonl").read_text().splitlines()[:count]
        records = [json.loads(line) for line in lines]
        for r in records:
            r["audio"] = str(ROOT / "data" / r["audio"])
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _command(run_dir: Path, corpus: Path, *overrides: str) -> list[str]:
    return [str(BIN / "asr-train"), *TINY, f"data.root={corpus}", f"hydra.run.dir={run_dir}", *overrides]


def _first_epoch(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])


@pytest.fixture(scope="module")
def one_device(tiny_corpus, tmp_path_factory) -> dict:
    """The first epoch's metrics of the tiny run on one device."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    done = subprocess.run(_command(run_dir, tiny_corpus), capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return _first_epoch(run_dir)


def _close(distributed: dict, single: dict) -> None:
    for key in ("loss", "val_loss"):
        assert distributed[key] == pytest.approx(single[key], rel=LOSS_RTOL), key
    for key in ("ler", "wer", "val_ler", "val_wer"):  # error counts from the same greedy decodes
        assert distributed[key] == pytest.approx(single[key], abs=1e-6), key


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_trains_like_one_device(tiny_corpus, one_device, tmp_path):
    run_dir = tmp_path / "mirrored"
    command = _command(run_dir, tiny_corpus, "trainer.cpu_devices=2")
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "strategy: mirrored, 1 worker(s), 2 replica(s) in sync" in (run_dir / "train.log").read_text()
    _close(_first_epoch(run_dir), one_device)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_by_tf_config_train_like_one_process_and_only_the_chief_writes(tiny_corpus, one_device, tmp_path):
    run_dir = tmp_path / "workers"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        # the workers' gRPC must not go through a proxy: cluster.export drops them for local workers
        env = _env(TF_CONFIG=config, https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
        command = _command(run_dir, tiny_corpus, "trainer.checkpoint_every_seconds=0")
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=300) for p in processes]  # a hard limit: a lost worker hangs the other
    finally:
        for p in processes:
            p.kill()
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "strategy: multi_worker, 2 worker(s), 2 replica(s) in sync" in (run_dir / "train.log").read_text()
    assert f"worker 1 of 2 done; the chief writes {run_dir}" in outputs[1][0]
    digests = [re.findall(r"weights after training: sha256 ([0-9a-f]{64})", out + err) for out, err in outputs]
    assert len(digests[0]) == 1 and digests[0] == digests[1]  # both workers end with the same weights
    _close(_first_epoch(run_dir), one_device)
    # the chief's checkpoint holds the weights every worker ended with (the workers' scratch copies are gone)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["epochs"] == 1 and len(list((run_dir / "checkpoints").glob("epoch-*.npz"))) == 1
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_submitit_local_multirun_of_two_jobs_of_two_tasks_each(tiny_corpus, one_device, tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        str(BIN / "asr-train"),
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.tasks_per_node=2",  # each job: two workers of one training
        *[o for o in TINY if not o.startswith("trainer.batch_size=")],
        "trainer.batch_size=8,12",
        f"data.root={tiny_corpus}",
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("0", "1"):
        log = (sweep / job / "train.log").read_text()
        assert "cluster from submitit: worker" in log
        assert "strategy: multi_worker, 2 worker(s), 2 replica(s) in sync" in log
    _close(_first_epoch(sweep / "0"), one_device)  # job 0 has the global batch of the one-device run
    for job in ("0", "1"):
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "completed"
        assert json.loads((sweep / job / "result.json").read_text())["epochs"] == 1


_SKIP_ON_EVERY_REPLICA = """
import json
import keras
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from asr.model.ctc import CTCModel
from asr.model.options import ModelOptions

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = CTCModel(4, "ab ", ModelOptions(num_layers=1, units=4))
    model.compile(optimizer=keras.optimizers.Adam(0.01), clipnorm=1.0)
    model.build_for()

def batches(poisoned):
    rng = np.random.default_rng(0)
    pieces = []
    for replica in range(2):  # one input pipeline: consecutive elements go to replicas 0 and 1
        features = rng.normal(size=(2, 12, 4)).astype(np.float32)
        if poisoned and replica == 1:
            features[0, 3, 1] = np.nan  # one frame of one utterance on the second replica only
        inputs = {"features": features, "lengths": np.array([12, 9], np.int32)}
        pieces.append((inputs, np.array([[0, 1], [1, -1]], np.int32)))
    def dataset(context):
        return tf.data.Dataset.from_generator(lambda: iter(pieces), output_signature=(
            {"features": tf.TensorSpec([2, 12, 4], tf.float32), "lengths": tf.TensorSpec([2], tf.int32)},
            tf.TensorSpec([2, 2], tf.int32)))
    return strategy.distribute_datasets_from_function(dataset)

before = [w.copy() for w in model.get_weights()]
poisoned = model.fit(batches(True), epochs=1, steps_per_epoch=1, verbose=0).history
same = all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
steps = int(model.optimizer.iterations.numpy())
clean = model.fit(batches(False), epochs=1, steps_per_epoch=1, verbose=0).history
moved = not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
print(json.dumps({"skipped": poisoned["skipped_batches"][0], "same": same, "steps": steps,
                  "clean_skipped": clean["skipped_batches"][0], "moved": moved,
                  "steps_after": int(model.optimizer.iterations.numpy())}))
"""


@pytest.mark.slow
def test_a_batch_non_finite_on_one_replica_is_skipped_on_every_replica():
    done = subprocess.run(
        [sys.executable, "-c", _SKIP_ON_EVERY_REPLICA], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the poisoned step: counted once, no weight and no optimizer step moved on either replica
    assert (result["skipped"], result["same"], result["steps"]) == (1.0, True, 0)
    assert (result["clean_skipped"], result["moved"], result["steps_after"]) == (0.0, True, 1)
