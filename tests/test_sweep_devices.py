"""reproduce on GPUs, tested where CI can: trials keep their key on any device, local GPU
workers are pinned round robin, Ray trials request GPUs and the driver queues more trials
than the cluster holds; wrong device options are one line."""

import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_args

from sparse_rational.errors import UserError
from sparse_rational.experiments import cli as rcli
from sparse_rational.experiments.executors import LocalExecutor, _assign_gpu, ray_runtime_env
from sparse_rational.experiments.protocol import TrialSpec


def reproduce(*argv) -> int:
    from sparse_rational.cli import main

    return main(["reproduce", *map(str, argv)])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "tpu"], "--device: 'tpu': reproduce runs trials on auto, cpu or cuda"),
        (["--device", "cpu", "--trials-per-gpu", "2"], "--trials-per-gpu: needs trials on CUDA"),
        (["--gpus-per-trial", "1"], "--gpus-per-trial: a number > 0, with --executor ray"),
        (["--executor", "ray", "--gpus-per-trial", "0"], "--gpus-per-trial: a number > 0"),
    ],
)
def test_bad_device_options_are_one_line(tiny_files, tmp_path, capsys, extra, message):
    assert reproduce(*tiny_args(tiny_files), "--budget", "smoke", *extra, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_line(tiny_files, tmp_path, capsys):
    assert reproduce(*tiny_args(tiny_files), "--budget", "smoke", "--device", "cuda", "--out", tmp_path / "o") == 2
    assert "--device: cuda: this torch is built without CUDA" in capsys.readouterr().err


def test_the_device_is_not_part_of_a_trials_identity(tiny_files, tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    rcli.add_parser(sub)
    args = parser.parse_args(["reproduce", *tiny_args(tiny_files), "--budget", "smoke", "--out", str(tmp_path)])
    args.trial_device = "cpu"
    cpu_plan, _ = rcli.build_plan(args)
    args.trial_device = "cuda"
    gpu_plan, _ = rcli.build_plan(args)
    cpu_spec = cpu_plan.search_trials(cpu_plan.datasets[0], cpu_plan.configs[0])[0]
    gpu_spec = gpu_plan.search_trials(gpu_plan.datasets[0], gpu_plan.configs[0])[0]
    assert (cpu_spec.device, gpu_spec.device) == ("cpu", "cuda")
    assert cpu_spec.key == gpu_spec.key and cpu_spec == gpu_spec
    assert gpu_plan.identity() == cpu_plan.identity()
    assert TrialSpec.from_dict(gpu_spec.to_dict()).device == "cuda"
    old = gpu_spec.to_dict()
    del old["device"]  # a record written before devices existed
    assert TrialSpec.from_dict(old).device == "cpu"


def test_gpu_slots_are_round_robin_over_the_visible_devices(monkeypatch):
    counter = mp.get_context("spawn").Value("i", 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unset")  # monkeypatch restores what was there
    seen = []
    for _ in range(5):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        assert _assign_gpu(counter, 2) is not None
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["0", "1", "0", "1", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the driver was given GPUs 3 and 5
    assert _assign_gpu(counter, 2) == 1 and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert _assign_gpu(None, 0) is None


def _visible() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


def test_local_gpu_workers_each_see_one_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    ex = LocalExecutor(4, threads=1, gpus=2)
    assert ex.capacity == ex.queue_depth == 4
    pool = ex._new_pool()
    try:
        import time

        futures = [pool.submit(time.sleep, 0.5) for _ in range(4)]  # start all four workers
        for f in futures:
            f.result()
        seen = sorted(pool.submit(_visible).result() for _ in range(8))
    finally:
        ex.close(cancel=True)
    assert set(seen) <= {"0", "1"} and seen  # every worker was pinned to one of the two GPUs


def test_ray_queues_more_than_it_holds_and_requests_gpus():
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sparse-rational[ray]'")
    from sparse_rational.experiments.executors import RayExecutor

    ex = RayExecutor(None, 2, threads=1)
    try:
        assert ex.capacity == 2 and ex.queue_depth == 4
    finally:
        ex.close()
    with pytest.raises(UserError, match="--gpus-per-trial: the local Ray instance has no GPU"):
        RayExecutor(None, 2, threads=1, gpus_per_trial=0.5)
    import ray

    assert not ray.is_initialized()


def test_ray_runtime_env_carries_the_package():
    import sparse_rational

    env = ray_runtime_env()
    assert env == {"py_modules": [str(Path(sparse_rational.__file__).resolve().parent)]}
    pip = ray_runtime_env(install=True)["pip"]
    assert pip[0] == f"torch=={torch.__version__.split('+')[0]}"
    assert not any(r.startswith(("pytest", "scikit-learn", "matplotlib")) for r in pip)
    assert any(r.startswith("safetensors") for r in pip)
