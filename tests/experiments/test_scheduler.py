"""batsnn.experiments.scheduler: where sweep runs go (CPU cores, GPUs, runs per GPU), worker
processes that see only their GPU, and a sweep over two GPUs."""

import os

import pytest
import torch

from batsnn import metrics as M
from batsnn.experiments import scheduler as S
from batsnn.experiments.config import resolve_config
from batsnn.experiments.rundir import read_csv, read_json
from batsnn.experiments.sweep import run_name, run_sweep
from batsnn.experiments.train import train


def test_cpu_plan_is_todays_jobs_and_threads():
    plan = S.plan_slots("cpu", cpu_count=8, base_device="cpu")
    assert len(plan.slots) == 8 and plan.threads == 1 and plan.device == "cpu"
    assert all(s.gpu is None and s.visible is None for s in plan.slots)
    plan = S.plan_slots("cpu", jobs=3, cpu_count=8, base_device="auto")
    assert len(plan.slots) == 3 and plan.threads == 2 and plan.device == "auto"
    assert plan.description == "3 at once on cpu" and not plan.in_process
    assert S.plan_slots("cpu", jobs=1, cpu_count=2).in_process


@pytest.mark.parametrize("kwargs, slots, device, words", [
    (dict(), [(0, "3"), (1, "5")], "cuda", "2 at once on GPUs 0,1 (1 per GPU)"),
    (dict(jobs_per_gpu=2), [(0, "3"), (1, "5"), (0, "3"), (1, "5")], "cuda",
     "4 at once on GPUs 0,1 (2 per GPU)"),
    (dict(gpus=[1], jobs_per_gpu=3), [(1, "5")] * 3, "cuda", "3 at once on GPU 1 (3 per GPU)"),
    (dict(jobs=3), [(0, "3"), (1, "5"), (0, "3")], "cuda", "3 at once on GPUs 0,1"),
    (dict(gpus=[1]), [(1, "5")], "cuda:1", "1 at once on cuda:1"),
    (dict(gpus=[0]), [(0, "3")], "auto", "1 at once on cuda:0"),
], ids=["all", "two-per-gpu", "one-gpu-three", "jobs-total", "one-slot", "one-slot-default"])
def test_gpu_plans(kwargs, slots, device, words):
    """``visible`` stands for CUDA_VISIBLE_DEVICES=3,5: cuda:0 is GPU 3, cuda:1 is GPU 5."""
    plan = S.plan_slots("cuda", base_device="auto", visible=["3", "5"], **kwargs)
    assert [(s.gpu, s.visible) for s in plan.slots] == slots
    assert plan.device == device and plan.description == words and plan.threads == 0
    assert plan.in_process == (len(slots) == 1)


@pytest.mark.parametrize("setting", ["cuda", "auto"], ids=["setting-cuda", "setting-auto"])
def test_a_resolved_device_still_spreads_over_every_gpu(setting):
    """run_sweep passes the resolved device (``cuda`` resolves to ``cuda:0``) and the runs'
    setting: a setting naming no GPU places runs on every visible one."""
    plan = S.plan_slots("cuda:0", base_device=setting, visible=["0", "1"])
    assert [(s.gpu, s.visible) for s in plan.slots] == [(0, "0"), (1, "1")]
    assert plan.device == "cuda" and plan.description == "2 at once on GPUs 0,1 (1 per GPU)"


def test_a_device_naming_a_gpu_is_the_default_placement():
    plan = S.plan_slots("cuda:1", base_device="cuda:1", visible=["0", "1"])
    assert [(s.gpu, s.visible) for s in plan.slots] == [(1, "1")] and plan.device == "cuda:1"


@pytest.mark.parametrize("device, kwargs, words", [
    ("cpu", dict(gpus=[0]), r"gpus \[0\] given but the runs train on cpu"),
    ("cpu", dict(jobs_per_gpu=2), "jobs_per_gpu given but the runs train on cpu"),
    ("cuda", dict(gpus=[2]), r"gpus: no GPU 2; 2 visible \(0 to 1\)"),
    ("cuda", dict(gpus=[0, 0]), "gpus must not repeat a GPU"),
    ("cuda", dict(gpus=[]), "gpus must name at least one GPU"),
    ("cuda", dict(jobs=2, jobs_per_gpu=1), "not both"),
    ("cuda", dict(jobs_per_gpu=0), "jobs_per_gpu must be an int >= 1"),
    ("cuda", dict(jobs=-1), "jobs must be an int >= 0"),
])
def test_bad_placements(device, kwargs, words):
    with pytest.raises(ValueError, match=words):
        S.plan_slots(device, visible=["0", "1"], **kwargs)


def test_no_gpus_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert S.visible_gpus() == []


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, GPU-abc ,6")
    assert S.visible_gpus() == ["4", "GPU-abc"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert S.visible_gpus() == ["0", "1"]


def _where(task):
    """A task run in a worker: what the worker sees."""
    if task == "fail":
        raise RuntimeError("task failed")
    return task, os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid(), torch.get_num_threads()


@pytest.mark.slow  # two worker processes; test_a_failed_task_is_raised starts one by default
def test_workers_see_only_their_slots_gpu():
    """Two slots standing for GPUs 7 and 9 (the workers only read the variable): the first two
    tasks start one per slot; every task runs in the worker of the slot it is reported with."""
    slots = [S.Slot(0, "7"), S.Slot(1, "9")]
    done = []
    S.run_on_slots(_where, ["a", "b", "c", "d", "e"], slots,
                   on_done=lambda task, res, slot: done.append((task, res, slot)), threads=1)
    assert sorted(t for t, _, _ in done) == ["a", "b", "c", "d", "e"]
    first = {t: slot for t, _, slot in done if t in ("a", "b")}
    assert first == {"a": slots[0], "b": slots[1]}
    pids = {}
    for task, (echo, visible, pid, threads), slot in done:
        assert echo == task and visible == slot.visible and threads == 1
        pids.setdefault(slot.visible, set()).add(pid)
    assert all(len(p) == 1 for p in pids.values())  # one process per slot
    assert pids["7"] != pids["9"]


def test_a_failed_task_is_raised():
    with pytest.raises(RuntimeError, match="task failed"):
        S.run_on_slots(_where, ["fail"], [S.Slot()])
    with pytest.raises(ValueError, match="at least one slot"):
        S.run_on_slots(_where, ["a"], [])


TINY = dict(dataset="fashion-mnist", hidden=[20], max_spikes=[6, 6], theta=[0.2, 0.4],
            batch_size=10, eval_batch_size=20, epochs=1)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_sweep_on_two_gpus_equals_single_runs(data_dir, tmp_path, per_gpu=2):
    out = tmp_path / "sweep"
    base = resolve_config("mnist-count", **TINY, device="cuda", data_dir=str(data_dir))
    lines = []
    run_sweep(base, [0, 0.004], [1, 2], out, gpus=[0, 1], jobs_per_gpu=per_gpu, quiet=True,
              log=lines.append)
    assert f"with {2 * per_gpu} at once on GPUs 0,1 ({per_gpu} per GPU)" in lines[0]
    gpus = [ln.rsplit("(GPU ", 1)[1].rstrip(")") for ln in lines if "(GPU " in ln]
    assert len(gpus) == 4 and {"0", "1"} <= set(gpus)
    rows = read_csv(out / "sweep.csv")
    assert len(rows) == 4
    cfg = read_json(out / "runs" / run_name(0.004, 2) / "config.json")
    assert cfg["device"] == "cuda" and cfg["resolved_device"] == "cuda:0"
    # a row equals the single run with the same settings
    single = resolve_config("mnist-count", **TINY, device="cuda", data_dir=str(data_dir),
                            dt=0.004, seed=2, out=str(tmp_path / "single"))
    s = train(single, quiet=True)
    assert float(rows[3][M.TEST_ACCURACY]) == s[M.TEST_ACCURACY]
    assert float(rows[3]["spikes_per_sample_l1"]) == pytest.approx(s["spikes_per_sample_l1"])
    # rerun: nothing left to train
    run_sweep(base, [0, 0.004], [1, 2], out, gpus=[0, 1], quiet=True, log=lines.append)
    assert any("4 finished already, 0 to train" in ln for ln in lines)
