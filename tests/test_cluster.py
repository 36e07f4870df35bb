"""Cluster discovery from TF_CONFIG, a faked SLURM step and a faked submitit job (no scheduler, no nvidia-smi)."""

import json
import os

import pytest

from asr.training import cluster
from asr.training.cluster import Cluster, ClusterError, discover, export, port_base

TWO = {"cluster": {"worker": ["127.0.0.1:5000", "127.0.0.1:5001"]}, "task": {"type": "worker", "index": 1}}


def test_tf_config_names_the_workers_and_this_process():
    found = discover({"TF_CONFIG": json.dumps(TWO)})
    assert found.workers == ("127.0.0.1:5000", "127.0.0.1:5001")
    assert (found.index, found.num_workers, found.is_chief, found.source) == (1, 2, False, "TF_CONFIG")


def test_a_tf_config_chief_task_comes_first_and_is_the_chief():
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "chief", "index": 0}}
    found = discover({"TF_CONFIG": json.dumps(config)})
    assert (found.workers, found.index, found.is_chief) == (("a:1", "b:1", "c:1"), 0, True)
    config["task"] = {"type": "worker", "index": 0}
    assert not discover({"TF_CONFIG": json.dumps(config)}).is_chief  # worker 0 is not the chief beside a chief


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "TF_CONFIG is not a cluster description"),
        (json.dumps({"cluster": {"worker": ["a:1"]}}), "TF_CONFIG is not a cluster description"),
        (json.dumps({**TWO, "task": {"type": "ps", "index": 0}}), "runs only chief and worker tasks"),
        (json.dumps({**TWO, "task": {"type": "worker", "index": 2}}), "task worker 2 is not in its cluster of 2"),
    ],
)
def test_a_bad_tf_config_is_refused_with_what_is_wrong(text, message):
    with pytest.raises(ClusterError, match=message):
        discover({"TF_CONFIG": text})


def test_a_multi_task_slurm_step_becomes_workers_on_its_nodes_without_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi anywhere
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env = {
        "SLURM_JOB_ID": "4321",
        "SLURM_PROCID": "3",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_STEP_NODELIST": "gpu[07-08]",
        "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # SlurmClusterResolver reads os.environ itself
    found = discover(env)
    base = port_base("4321")
    assert base == cluster.PORT_BASE + cluster.PORT_STRIDE * (4321 % (cluster.PORT_SPAN // cluster.PORT_STRIDE))
    assert found.workers == (f"gpu07:{base}", f"gpu07:{base + 1}", f"gpu08:{base}", f"gpu08:{base + 1}")
    assert (found.index, found.source, found.is_chief) == (3, "slurm", False)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # left to SLURM


def test_a_one_task_slurm_step_is_a_single_process():
    assert discover({"SLURM_JOB_ID": "9", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}) == Cluster()


def test_a_submitit_local_job_of_two_tasks_gets_a_port_per_task():
    env = {"SUBMITIT_LOCAL_JOB_ID": "777", "SUBMITIT_LOCAL_NTASKS": "2", "SUBMITIT_LOCAL_GLOBALID": "1"}
    found = discover(env)
    base = port_base("777")
    assert found.workers == (f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}")
    assert (found.index, found.source) == (1, "submitit")
    assert discover({**env, "SUBMITIT_LOCAL_NTASKS": "1"}) == Cluster()


def test_ports_of_jobs_stay_in_their_range_for_any_job_id():
    for job in ("0", "9999", "10000", "123456789", "local-abc"):
        assert cluster.PORT_BASE <= port_base(job) < cluster.PORT_BASE + cluster.PORT_SPAN
    # jobs with consecutive ids (started together) get disjoint blocks of ports for their tasks
    assert port_base("13") - port_base("12") == cluster.PORT_STRIDE


def test_export_writes_tf_config_and_drops_proxies_for_local_workers():
    env = {"https_proxy": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128", "HOME": "/root"}
    found = Cluster(("127.0.0.1:7000", "127.0.0.1:7001"), 0, "submitit")
    export(found, env)
    assert json.loads(env["TF_CONFIG"]) == {
        "cluster": {"worker": ["127.0.0.1:7000", "127.0.0.1:7001"]},
        "task": {"type": "worker", "index": 0},
    }
    assert "https_proxy" not in env and "HTTP_PROXY" not in env and env["HOME"] == "/root"
    assert discover(env) == Cluster(found.workers, 0, "TF_CONFIG")  # what the training process then reads


def test_export_keeps_proxies_but_reaches_remote_workers_directly():
    env = {"https_proxy": "http://proxy:3128", "no_proxy": "localhost"}
    export(Cluster(("n1:7000", "n2:7000"), 1, "slurm"), env)
    assert env["https_proxy"] == "http://proxy:3128"
    assert env["no_proxy"] == "localhost,n1,n2"


def test_a_single_process_exports_nothing():
    env = {"https_proxy": "x"}
    export(Cluster(), env)
    assert env == {"https_proxy": "x"}
