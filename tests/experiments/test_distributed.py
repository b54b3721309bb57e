"""batsnn.experiments.distributed: the data split, DDP on the CPU (gloo, 2 processes) against
one process with the full batch, distributed train() with resume, and ``batsnn train --ddp 2``.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp

import batsnn
from batsnn import metrics as M
from batsnn.experiments import distributed as D
from batsnn.experiments.config import resolve_config
from batsnn.experiments.data import load_dataset
from batsnn.experiments.model import build_model
from batsnn.experiments.rundir import RunDir, read_csv, read_json
from batsnn.experiments.train import TrainState, encode_images, fit, loss_and_prediction, train
from batsnn.metrics import EvalStats

TINY = dict(dataset="fashion-mnist", hidden=[20], max_spikes=[6, 6], theta=[0.2, 0.4],
            eval_batch_size=7, lr=0.01, device="cpu")
PER_PROCESS = 7      # batch per process in the float64 check: 57 samples = 4 x 14 + 1
TRAIN_SAMPLES = 57   # the last global batch has 1 sample: process 1 steps on a placeholder
RUN_BATCH = 5        # batch per process of the train() runs (60 samples = 6 x 10)
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="needs torch.distributed with gloo")


# ----------------------------------------------------------------------------- the split

def _plain_batches(order, size):
    return [order[i:i + size] for i in range(0, len(order), size)]


@pytest.mark.parametrize("n, batch, world", [(57, 7, 2), (60, 5, 3), (10, 4, 1), (5, 2, 4),
                                             (3, 1, 4)],
                         ids=["placeholder", "three", "single", "short", "fewer-than-world"])
def test_shards_of_a_global_batch_are_the_single_process_batch(n, batch, world):
    g = torch.Generator().manual_seed(n)
    order = torch.randperm(n, generator=g)
    values = torch.randn(n, dtype=torch.float64, generator=g)  # a per-sample "loss"
    per_rank = [list(D.shard_batches(lambda e: order, batch, r, world)(1)) for r in range(world)]
    single = _plain_batches(order, batch * world)
    assert all(len(shards) == len(single) for shards in per_rank)  # same steps everywhere
    for k, glob in enumerate(single):
        shards = [per_rank[r][k] for r in range(world)]
        real = [s for s in shards if s.samples]
        # the processes' samples are the global batch, each once, split as DistributedSampler
        assert torch.equal(torch.sort(torch.cat([s.idx for s in real])).values,
                           torch.sort(glob).values)
        for r, s in enumerate(shards):
            if s.samples:
                assert torch.equal(s.idx, glob[r::world]) and s.samples == len(s.idx)
            else:  # nothing left for this process: one sample, weight 0
                assert len(glob) < world and s.weight == 0.0 and len(s.idx) == 1
            assert s.full == (len(glob) == batch * world)
            if s.full:
                assert s.weight == 1.0 and s.samples == batch
        # DDP's average of the weighted shard means is the global batch's mean
        avg = sum(s.weight * values[s.idx].mean() for s in shards) / world
        assert float(avg) == pytest.approx(float(values[glob].mean()), rel=1e-12)


def test_shard_batches_and_blocks_reject_bad_arguments():
    order = lambda e: torch.arange(4)  # noqa: E731
    for kwargs, words in [(dict(batch_size=0), "batch_size must be an int >= 1"),
                          (dict(batch_size=2, world_size=0), "world_size must be an int >= 1"),
                          (dict(batch_size=2, rank=2, world_size=2), "rank must be < world_size"),
                          (dict(batch_size=True), "batch_size must be an int")]:
        with pytest.raises(ValueError, match=words):
            D.shard_batches(order, **kwargs)
    blocks = [D.DistContext(rank=r, world_size=3).shard(10) for r in range(3)]
    assert [(b.start, b.stop) for b in blocks] == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(ValueError, match=r"test samples \(2\) must be at least the number of "
                                         r"processes \(3\)"):
        D.DistContext(rank=0, world_size=3).shard(2, "test samples")


def test_single_process_context_does_nothing():
    ctx = D.current("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    model = torch.nn.Linear(2, 2)
    net, average = D.data_parallel(model, ctx)
    assert net is model and average() is None
    assert ctx.broadcast("x") == "x" and ctx.shard(5) == slice(0, 5)
    t = torch.ones(3)
    assert ctx.all_sum(t) is t


def test_torchrun_environment(monkeypatch, capsys):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert not D.launched_by_torchrun()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert D.launched_by_torchrun()  # also with one process (--ddp 1 must not relaunch)
    with D.process_group("cpu") as ctx:  # one process: no group to set up
        assert ctx.world_size == 1 and not dist.is_initialized()
    from batsnn.cli import main

    assert main(["sweep", "--preset", "mnist-count", "--dt", "0", "--out", "x"]) == 2
    assert "only 'batsnn train' runs in several processes" in capsys.readouterr().err


def test_check_resume_world_size(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"world_size": 2}))
    D.check_resume_world_size(cfg, 2)
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\), this is 1.*--ddp 2"):
        D.check_resume_world_size(cfg, 1)
    cfg.write_text(json.dumps({"seed": 1}))  # older runs: one process
    D.check_resume_world_size(cfg, 1)
    with pytest.raises(ValueError, match="single process"):
        D.check_resume_world_size(cfg, 2)


# ----------------------------------------------------------------------------- DDP replicas

@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


@needs_gloo
def test_layers_hold_no_state_between_steps_under_ddp(one_process_group):
    """A DDP-wrapped batsnn network: no buffers, a state_dict of weights only, and two
    forward/backward passes on the same input give the same outputs and gradients."""
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    model = build_model(resolve_config("mnist-count", hidden=[12], max_spikes=[8, 8],
                                       theta=[0.2, 0.3], init=[-0.5, 1.0]), 30, 4)
    model = model.double()
    assert list(model.buffers()) == []
    assert list(model.state_dict()) == [n for n, _ in model.named_parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ddp = DistributedDataParallel(model)
    x = batsnn.ttfs_encode(torch.rand(6, 30, dtype=torch.float64)).double()
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    cfg = resolve_config("mnist-count", target_true=4, target_false=1)
    runs = []
    for _ in range(2):
        ddp.zero_grad(set_to_none=True)
        out = ddp(x)
        loss, _ = loss_and_prediction(cfg, out, y)
        loss.backward()
        runs.append((out.times.clone(), out.counts.clone(),
                     [p.grad.clone() for p in model.parameters()]))
    assert int(runs[0][1].sum()) > 0  # the network spikes
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    for g0, g1 in zip(runs[0][2], runs[1][2]):
        assert torch.equal(g0, g1) and bool(g0.abs().sum() > 0)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step: nothing moved
    torch.optim.Adam(model.parameters(), lr=0.01).step()
    changed = [k for k in before if not torch.equal(before[k], model.state_dict()[k])]
    assert changed == list(before)  # a step moves the weights, and there is nothing else


# ----------------------------------------------------------------------------- 2 processes

def _tiny_fit(data_dir, batch_size, ctx, epochs=2):
    """A 784-20-10 network in float64 on the fake data, trained with the distributed pieces
    (shard_batches, data_parallel, ReduceTrainCounters, reduce_eval_stats) and fit; returns
    the final weights and the rows."""
    cfg = resolve_config("mnist-count", **TINY)
    ds = load_dataset(cfg.dataset, data_dir).subset(TRAIN_SAMPLES, None)
    x = encode_images(ds.train_x, cfg, "cpu").double()
    y = ds.train_y
    test = ctx.shard(len(ds.test_y))
    x_test, y_test = encode_images(ds.test_x[test], cfg, "cpu").double(), ds.test_y[test]
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, 784, ds.n_classes).double()
    net, average = D.data_parallel(model, ctx)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    state = TrainState(model, opt, "cpu")

    def step(shard):
        opt.zero_grad(set_to_none=True)
        out = net(x[shard.idx])
        loss, pred = loss_and_prediction(cfg, out, y[shard.idx])
        (loss * shard.weight).backward()
        average()
        opt.step()
        if shard.samples:
            state.loss_sum.add_(loss.detach() * shard.samples)
            state.correct.add_((pred == y[shard.idx]).sum())
        return shard.samples

    def evaluate(st):
        stats = EvalStats(None, "count", cfg.target_true)
        with torch.no_grad():
            for i in range(0, len(y_test), cfg.eval_batch_size):
                outs = model.forward_all(x_test[i:i + cfg.eval_batch_size])
                yy = y_test[i:i + cfg.eval_batch_size]
                loss, pred = loss_and_prediction(cfg, outs[-1], yy)
                stats.update(outs, yy, float(loss), pred)
        D.reduce_eval_stats(stats, ctx)
        return stats.result()

    order = lambda epoch: torch.randperm(len(y), generator=torch.Generator().manual_seed(  # noqa
        epoch))
    fit(state, epochs=epochs, batches=D.shard_batches(order, batch_size, ctx.rank,
                                                      ctx.world_size),
        step=step, evaluate=evaluate, callbacks=[D.ReduceTrainCounters(ctx)])
    return {k: v.clone() for k, v in model.state_dict().items()}, state.history


def _worker(rank, world, store, data_dir, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    try:
        torch.set_num_threads(1)
        ctx = D.current("cpu")
        assert (ctx.rank, ctx.world_size, ctx.backend) == (rank, world, "gloo")
        weights, rows = _tiny_fit(data_dir, PER_PROCESS, ctx)
        if rank == 0:
            torch.save({"weights": weights, "rows": rows}, out / "fit.pt")
        # train() itself: one epoch, then continued to two with resume
        base = dict(**TINY, data_dir=str(data_dir), batch_size=RUN_BATCH,
                    out=str(out / "ddp-run"))
        train(resolve_config("mnist-count", **base, epochs=1), quiet=True)
        train(resolve_config("mnist-count", **base, epochs=2), resume=True, quiet=True)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(data_dir, tmp_path_factory):
    """Runs _worker in 2 processes on the gloo backend; returns their output directory."""
    out = tmp_path_factory.mktemp("ddp")
    tmp.spawn(_worker, args=(2, str(out / "store"), data_dir, out), nprocs=2, join=True)
    return out


@pytest.fixture(scope="module")
def single_run(data_dir, tmp_path_factory):
    """One process, batch 2 x RUN_BATCH, two epochs: what the 2-process runs must equal."""
    out = tmp_path_factory.mktemp("single") / "run"
    train(resolve_config("mnist-count", **TINY, data_dir=str(data_dir), epochs=2,
                         batch_size=2 * RUN_BATCH, out=str(out)), quiet=True)
    return out


def assert_rows_close(rows, ref, rel):
    """Metric rows (dicts of numbers or CSV strings) equal up to ``rel``, apart from times."""
    assert len(rows) == len(ref)
    for row, want in zip(rows, ref):
        assert set(row) == set(want)
        for k in want:
            if k in (M.TRAIN_SECONDS, M.EPOCH_SECONDS):
                continue
            a, b = float(row[k]), float(want[k])
            assert a == pytest.approx(b, rel=rel, abs=rel, nan_ok=True), (k, a, b)


@pytest.mark.slow
@needs_gloo
def test_ddp_gloo_two_processes_reach_the_weights_of_one_process(two_processes, data_dir):
    """float64: 2 processes x 7 samples (DDP, gloo) equal one process x 14 samples, the last
    batch of 1 sample included (process 1 steps on a placeholder with weight 0)."""
    got = torch.load(two_processes / "fit.pt")
    want_w, want_rows = _tiny_fit(data_dir, 2 * PER_PROCESS, D.DistContext())
    torch.manual_seed(resolve_config("mnist-count", **TINY).seed)
    start = build_model(resolve_config("mnist-count", **TINY), 784, 10)
    for k, w in want_w.items():
        assert not torch.allclose(w.float(), start.state_dict()[k])  # training moved them
        torch.testing.assert_close(got["weights"][k], w, rtol=1e-10, atol=1e-12)
    assert_rows_close(got["rows"], want_rows, rel=1e-10)
    assert want_rows[-1][M.TEST_ACCURACY] > 0.1


@pytest.mark.slow  # two processes started; test_cli_ddp_failure_in_the_processes_is_one_line runs by default
@needs_gloo
def test_distributed_train_resumes_and_equals_one_process(two_processes, single_run):
    """train() in 2 processes (1 epoch, then resumed to 2) against one process with the
    effective batch: same rows up to float32 summation order, one set of files."""
    run = RunDir(two_processes / "ddp-run")
    cfg = read_json(run.config)
    assert (cfg["world_size"], cfg["batch_size"], cfg["effective_batch_size"]) == (
        2, RUN_BATCH, 2 * RUN_BATCH)
    assert read_json(RunDir(single_run).config)["world_size"] == 1
    assert sorted(p.name for p in run.path.iterdir()) == sorted(
        p.name for p in single_run.iterdir())
    rows, ref = read_csv(run.metrics), read_csv(RunDir(single_run).metrics)
    assert [r[M.TEST_ACCURACY] for r in rows] == [r[M.TEST_ACCURACY] for r in ref]
    assert_rows_close(rows, ref, rel=1e-5)
    ck_ddp = torch.load(run.last, weights_only=False)
    ck_one = torch.load(RunDir(single_run).last, weights_only=False)
    assert ck_ddp["step"] == ck_one["step"] == 12
    for k, w in ck_one["model"].items():
        torch.testing.assert_close(ck_ddp["model"][k], w, rtol=1e-5, atol=1e-5)
    # a single process refuses to continue it: the effective batch would change
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\), this is 1"):
        train(resolve_config(file=run.config, epochs=3), resume=True, quiet=True)


def _env_with_src():
    env = dict(os.environ)
    src = str(Path(batsnn.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    return env


@needs_gloo
@pytest.mark.slow  # 3 processes importing torch; DDP training itself runs above
def test_cli_train_ddp_2_on_cpu(data_dir, single_run, tmp_path):
    """``batsnn train --ddp 2 --device cpu``: torchrun starts 2 processes; the run directory
    is written once, states the effective batch and holds the rows of one process."""
    out = tmp_path / "cli-ddp"
    args = ["train", "--ddp", "2", "--preset", "mnist-count", "--dataset", "fashion-mnist",
            "--data-dir", str(data_dir), "--hidden", "20", "--max-spikes", "6,6", "--theta",
            "0.2,0.4", "--eval-batch-size", "7", "--lr", "0.01", "--device", "cpu",
            "--batch-size", str(RUN_BATCH), "--epochs", "2", "--quiet", "--out", str(out)]
    res = subprocess.run([sys.executable, "-m", "batsnn", *args], capture_output=True,
                         text=True, env=_env_with_src(), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("test accuracy") == 1  # rank 0 alone prints
    cfg = read_json(RunDir(out).config)
    assert (cfg["world_size"], cfg["effective_batch_size"]) == (2, 2 * RUN_BATCH)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in single_run.iterdir())
    rows, ref = read_csv(RunDir(out).metrics), read_csv(RunDir(single_run).metrics)
    assert [r[M.TEST_ACCURACY] for r in rows] == [r[M.TEST_ACCURACY] for r in ref]
    assert_rows_close(rows, ref, rel=1e-5)
    # started again without --resume: refused before any process starts
    res = subprocess.run([sys.executable, "-m", "batsnn", *args], capture_output=True,
                         text=True, env=_env_with_src(), timeout=120)
    assert res.returncode == 2 and "already holds a run" in res.stderr
    assert "torch.distributed" not in res.stderr


@pytest.mark.parametrize("argv, words", [
    (["--ddp", "0"], "--ddp must be >= 1"),
    (["--ddp", "2", "--device", "cuda:1"], "names one GPU"),
])
def test_cli_ddp_bad_arguments(argv, words, capsys):
    from batsnn.cli import main

    assert main(["train", "--preset", "mnist-count", "--device", "cpu", *argv]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.cuda
def test_cli_ddp_needs_a_gpu_per_process(capsys):
    from batsnn.cli import main

    n = torch.cuda.device_count()
    assert main(["train", "--preset", "mnist-count", "--device", "cuda", "--ddp",
                 str(n + 1)]) == 2
    assert f"needs {n + 1} GPUs" in capsys.readouterr().err


needs_2_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")


@pytest.mark.cuda
@needs_2_gpus
def test_cli_ddp_2_gpus_equals_one_gpu(data_dir, tmp_path):
    """2 GPUs (NCCL) against one GPU with the effective batch: the CUDA-graph step (gradients
    all-reduced inside the graph) and DDP's eager step give the rows of one GPU up to float32
    summation order. 51 samples: the last global batch has 1 sample, so process 1 takes a
    placeholder step (outside the graph)."""
    common = ["--preset", "mnist-count", "--dataset", "fashion-mnist", "--data-dir",
              str(data_dir), "--hidden", "20", "--max-spikes", "6,6", "--theta", "0.2,0.4",
              "--eval-batch-size", "7", "--lr", "0.01", "--device", "cuda", "--epochs", "2",
              "--train-samples", "51", "--quiet"]
    runs = {}
    for name, extra in (("one", ["--batch-size", str(2 * RUN_BATCH)]),
                        ("graph", ["--ddp", "2", "--batch-size", str(RUN_BATCH)]),
                        ("eager", ["--ddp", "2", "--batch-size", str(RUN_BATCH),
                                   "--no-cuda-graph"])):
        res = subprocess.run([sys.executable, "-m", "batsnn", "train", *common, *extra,
                              "--out", str(tmp_path / name)], capture_output=True, text=True,
                             env=_env_with_src(), timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        runs[name] = read_csv(tmp_path / name / "metrics.csv")
    for name in ("graph", "eager"):
        cfg = read_json(tmp_path / name / "config.json")
        assert (cfg["world_size"], cfg["effective_batch_size"]) == (2, 2 * RUN_BATCH)
        for a, b in zip(runs[name], runs["one"]):
            assert abs(float(a[M.TEST_ACCURACY]) - float(b[M.TEST_ACCURACY])) <= 0.1, name
            assert float(a[M.TRAIN_LOSS]) == pytest.approx(float(b[M.TRAIN_LOSS]), rel=1e-2)
            assert math.isfinite(float(a[M.TEST_LOSS]))


# ----------------------------------------------------------------------------- launching

def test_check_launch_bounds_the_processes(monkeypatch):
    monkeypatch.setattr(D, "cpu_cores", lambda: 2)
    D.check_launch(2, "cpu")
    with pytest.raises(ValueError, match=r"--ddp 3 would start 3 processes on the CPU, which "
                                         r"has 2 cores .*give --ddp 2 or fewer"):
        D.check_launch(3, "cpu")
    with pytest.raises(ValueError, match="--ddp must be >= 1"):
        D.check_launch(0, "cpu")
    assert D.cpu_cores() >= 1


def test_check_launch_checks_the_run_directory_and_creates_nothing(tmp_path, monkeypatch):
    from batsnn.experiments.rundir import MARKER, OutDirError, RunExists, write_json

    monkeypatch.setattr(D, "cpu_cores", lambda: 8)
    D.check_launch(2, "cpu", str(tmp_path / "new" / "run"))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutDirError, match="is a file, not a directory"):
        D.check_launch(2, "cpu", str(tmp_path / "f"))
    run = tmp_path / "run"
    run.mkdir()
    write_json(run / "config.json", {MARKER: "train", "world_size": 1})
    with pytest.raises(RunExists):
        D.check_launch(2, "cpu", str(run))
    D.check_launch(2, "cpu", str(run), resume=True)  # no checkpoint yet: a fresh start


def test_report_error_leaves_the_line_for_the_launcher(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE", D.ERRORS_ENV):
        monkeypatch.delenv(k, raising=False)
    assert D.report_error("batsnn: error: x") is False  # not under the launcher: print it
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert D.report_error("batsnn: error: x") is False  # torchrun, but not batsnn's launcher
    monkeypatch.setenv(D.ERRORS_ENV, str(tmp_path))
    assert D.report_error("batsnn: error: x") is True
    assert (tmp_path / "rank-1").read_text() == "batsnn: error: x"


def test_cli_ddp_without_out_gives_every_process_one_new_directory(tmp_path, monkeypatch):
    from batsnn.cli import main

    started = []
    monkeypatch.setattr(D, "cpu_cores", lambda: 8)
    monkeypatch.setattr(D, "launch", lambda argv, n: started.append((list(argv), n)) or 0)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "mnist-count", "--device", "cpu", "--ddp", "2"]) == 0
    (argv, n), = started
    assert n == 2 and argv[-2] == "--out" and argv[-1].startswith("runs/mnist-count-")
    assert (tmp_path / argv[-1]).is_dir()


@needs_gloo
@pytest.mark.skipif(D.cpu_cores() < 2, reason="needs 2 CPU cores")
def test_cli_ddp_failure_in_the_processes_is_one_line(data_dir, tmp_path):
    """The processes fail (no dataset): stderr is the one line of a single process, without
    torchrun's notes, and the run directory they made is gone again."""
    out = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    res = subprocess.run([sys.executable, "-m", "batsnn", "train", "--ddp", "2", "--device",
                          "cpu", "--preset", "mnist-count", "--dataset", "fashion-mnist",
                          "--data-dir", str(tmp_path / "empty"), "--quiet", "--out", str(out)],
                         capture_output=True, text=True, env=_env_with_src(), timeout=300)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "batsnn: error: dataset 'fashion-mnist' not found"), res.stderr
    assert not out.exists()
