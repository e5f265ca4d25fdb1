"""Data parallelism under torchrun (gloo, 2 CPU processes): same results as one process, identical replicas."""

import json
import socket
import subprocess
import sys

import pytest
import torch

from common.paths import REPO_ROOT
from tests.fixtures import make_scene_dataset

SNN = [
    "-hidden",
    "32",
    "-timesteps",
    "4",
    "-epochs",
    "3",
    "-b",
    "16",
    "-hlop_out_num",
    "4,8,8",
    "-hlop_out_num_inc",
    "4,8,8",
]


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def launch(nproc: int, *args: str) -> subprocess.CompletedProcess:
    command = (
        [sys.executable, *args]
        if nproc == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            *args,
        ]
    )
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = make_scene_dataset(root / "data", per_class=30)
    out = root / "pw"
    cache = ["-cache_dir", str(root / "cache")]
    launch(
        1,
        "spiking_pretrain_multimodal.py",
        "-data_dir",
        str(data),
        "-out",
        str(out),
        *cache,
        "-epochs",
        "2",
        "-image_size",
        "16",
        "-feature_dim",
        "16",
    )
    return data, out, cache


def test_two_processes_match_one_and_keep_identical_replicas(pretrained, tmp_path):
    data, weights, cache = pretrained
    common = ["spiking_train_multimodal_end.py", "-data_dir", str(data), "-pretrained", str(weights), *cache, *SNN]
    launch(1, *common, "-out_dir", str(tmp_path / "one"))
    two = launch(2, *common, "-out_dir", str(tmp_path / "two"))
    assert "replicas: 2 processes hold the same network and method state (max difference 0)" in two.stdout
    one_results = json.loads((tmp_path / "one" / "results.json").read_text())
    two_results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two_results["processes"] == 2
    for row_one, row_two in zip(one_results["acc_matrix"], two_results["acc_matrix"], strict=True):
        for a, b in zip(row_one, row_two, strict=True):
            assert (a is None and b is None) or abs(a - b) <= 0.05
    lateral_one = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)["method"]
    lateral_two = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)["method"]
    for name, value in lateral_one.items():
        torch.testing.assert_close(lateral_two[name], value, atol=1e-4, rtol=1e-3)


def test_pretraining_runs_under_torchrun(pretrained, tmp_path):
    data, _, cache = pretrained
    launch(
        2,
        "spiking_pretrain_multimodal.py",
        "-data_dir",
        str(data),
        "-out",
        str(tmp_path / "pw"),
        *cache,
        "-epochs",
        "1",
        "-image_size",
        "16",
        "-feature_dim",
        "16",
    )
    meta = json.loads((tmp_path / "pw" / "meta.json").read_text())
    assert meta["processes"] == 2 and set(meta["test_acc"]) == {"image", "audio", "fused"}
