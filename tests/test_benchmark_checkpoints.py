"""Training checkpoints: an interrupted benchmark run resumes to the uninterrupted numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import drpo_rl.benchmark.run as runner
from drpo_rl.benchmark import make_config, run_benchmark
from drpo_rl.benchmark.run import checkpoint_settings
from drpo_rl.benchmark.store import ResultStore, RunKey
from drpo_rl.benchmark.training import train

# DRPO (adaptive kappa) and IQL (target critics) over 40 steps, checkpointed at 10, 20, 30.
CONFIG = make_config("tiny", algorithms=("drpo", "iql"), references=(), steps=40, curve_points=4)
DRPO, IQL = (RunKey("medium", name, 0) for name in ("drpo", "iql"))


class Interrupted(Exception):
    pass


def interrupt_at_evaluation(monkeypatch, call: int) -> None:
    """Make the ``call``-th online evaluation of the next benchmark raise ``Interrupted``."""
    calls = iter(range(1, 10_000))
    real = runner.evaluate

    def evaluate(*args, **kwargs):
        if next(calls) == call:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "evaluate", evaluate)


def run(out, messages: list[str] | None = None):
    return run_benchmark(
        CONFIG, out, progress=False, echo=(messages.append if messages is not None else print)
    )


def policy_weights(out, key: RunKey) -> dict[str, torch.Tensor]:
    return torch.load(ResultStore(out).path(key).with_suffix(".pt"), weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run(tmp_path_factory.mktemp("uninterrupted"))


def test_interrupted_runs_resume_to_the_uninterrupted_numbers(uninterrupted, tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    # Evaluations: drpo at steps 10, 20, then 30 is interrupted (checkpoint at 20).
    interrupt_at_evaluation(monkeypatch, 3)
    with pytest.raises(Interrupted):
        run(tmp_path)
    assert not store.has(DRPO)
    checkpoint = store.checkpoint_path(DRPO)
    assert checkpoint.name == "seed-0.ckpt.pt"
    saved = torch.load(checkpoint, weights_only=True)["state"]
    assert saved["step"] == 20
    assert [p["step"] for p in saved["curve"]] == [10, 20]
    # DRPO's adaptive kappa, the optimiser's moments and both random streams are in it.
    assert saved["loss_modules"]["policy"]["kappa"].shape == ()
    # kappa adapts during training (the curve's terms are before each update's adaptation).
    kappa = float(saved["loss_modules"]["policy"]["kappa"])
    assert 0 < kappa < 1 and kappa != saved["curve"][0]["kappa"]
    adam = saved["optimizer"]["state"]
    assert adam and all(int(s["step"]) == 20 for s in adam.values())
    assert saved["sampler_rng"].dtype == saved["torch_rng"].dtype == torch.uint8

    # Second go: drpo continues from step 20 and finishes; iql is interrupted at step 30
    # (evaluations: drpo 30, 40, iql 10, 20, then 30), after its checkpoint at 20.
    interrupt_at_evaluation(monkeypatch, 5)
    messages: list[str] = []
    with pytest.raises(Interrupted):
        run(tmp_path, messages)
    assert messages == ["resuming medium/drpo/seed-0 from step 20 of 40"]
    assert store.has(DRPO) and not store.checkpoint_path(DRPO).exists()
    iql_state = torch.load(store.checkpoint_path(IQL), weights_only=True)["state"]
    assert iql_state["step"] == 20
    assert any("target_" in name for sd in iql_state["loss_modules"].values() for name in sd)

    monkeypatch.undo()
    messages = []
    resumed = run(tmp_path, messages)
    assert messages[-1] == "resuming medium/iql/seed-0 from step 20 of 40"
    assert [str(k) for k in resumed.ran] == ["medium/iql/seed-0"]
    assert not list(tmp_path.rglob("*.ckpt.pt"))
    for expected, got in zip(uninterrupted.records, resumed.records, strict=True):
        assert got["algorithm"] == expected["algorithm"]
        for field in ("metrics", "curve", "monitor", "hparams"):
            assert got[field] == expected[field], (got["algorithm"], field)
    for key in (DRPO, IQL):
        expected, got = policy_weights(uninterrupted.out_dir, key), policy_weights(tmp_path, key)
        assert expected.keys() == got.keys()
        for name in expected:
            assert torch.equal(expected[name], got[name]), (key, name)
    # A checkpoint left beside a finished run (killed between the two writes) is removed.
    store.save_checkpoint(DRPO, {"step": 20}, checkpoint_settings(CONFIG, DRPO))
    assert run(tmp_path).ran == [] and not store.checkpoint_path(DRPO).exists()


# Trains like CONFIG but hangs at drpo's evaluation at step 30, after its checkpoint at 20,
# and then creates the file argv[2] so that the test knows when to kill it.
KILLED_BENCHMARK = textwrap.dedent(
    """
    import sys, time, torch
    import drpo_rl.benchmark.run as runner
    from drpo_rl.benchmark import make_config, run_benchmark

    torch.set_num_threads(1)
    calls, real = [], runner.evaluate

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            open(sys.argv[2], "w").close()
            time.sleep(600)
        return real(*args, **kwargs)

    runner.evaluate = evaluate
    config = make_config(
        "tiny", algorithms=("drpo", "iql"), references=(), steps=40, curve_points=4
    )
    run_benchmark(config, sys.argv[1], progress=False)
    """
)


def test_killed_benchmark_resumes_from_its_checkpoint(uninterrupted, tmp_path):
    out = tmp_path / "out"
    store = ResultStore(out)
    hanging = tmp_path / "hanging"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_BENCHMARK, str(tmp_path / "out"), str(hanging)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # No wall-clock bound: a benchmark that never reaches its hang is pytest's timeout.
        while not hanging.exists():
            assert process.poll() is None, "the benchmark ended before it hung"
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait()
    assert store.checkpoint_path(DRPO).exists() and not store.has(DRPO)
    messages: list[str] = []
    resumed = run(out, messages)
    assert messages == ["resuming medium/drpo/seed-0 from step 20 of 40"]
    for expected, got in zip(uninterrupted.records, resumed.records, strict=True):
        assert got["curve"] == expected["curve"] and got["metrics"] == expected["metrics"]
    expected, got = policy_weights(uninterrupted.out_dir, DRPO), policy_weights(out, DRPO)
    assert all(torch.equal(expected[name], got[name]) for name in expected)


class _Payload:
    """Unpickling this would create the marker folder."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_tampered_checkpoint_is_refused_without_executing(tmp_path):
    store = ResultStore(tmp_path)
    marker = tmp_path / "executed"
    path = store.checkpoint_path(DRPO)
    path.parent.mkdir(parents=True)
    torch.save({"settings": "{}", "state": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": not a readable training"):
        run(tmp_path)
    assert not marker.exists()
    # Refused before any work: no run was done.
    assert not store.has(DRPO) and not store.has(IQL)
    # Loadable tensors that are not a checkpoint are refused too.
    torch.save({"settings": "{}", "state": {"weights": torch.ones(2)}}, path)
    with pytest.raises(ValueError, match="not a training checkpoint .*'state' with its 'step'"):
        run(tmp_path)


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    store = ResultStore(tmp_path)
    other = make_config("tiny", algorithms=("drpo", "iql"), references=(), steps=40, lr=0.5)
    store.save_checkpoint(DRPO, {"step": 20}, checkpoint_settings(other, DRPO))
    with pytest.raises(ValueError, match="checkpoint made with other settings .*lr: stored 0.5"):
        run(tmp_path)
    # A checkpoint moved to another run's place is refused too.
    store.checkpoint_path(DRPO).unlink()
    store.save_checkpoint(IQL, {"step": 20}, checkpoint_settings(CONFIG, DRPO))
    with pytest.raises(ValueError, match="run: stored 'medium/drpo/seed-0'"):
        run(tmp_path)
    assert not store.has(DRPO) and not store.has(IQL)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    from drpo_rl.models import PolicySpecs
    from envs import make_env

    store = ResultStore(tmp_path_factory.mktemp("logs"))
    rows = runner.open_logs(CONFIG, store, "medium", 0, progress=False)[:]
    return rows, PolicySpecs.from_env(make_env(CONFIG.env))


def train_tiny(algorithm: str, logged, **kwargs):
    rows, specs = logged
    return train(
        algorithm,
        rows,
        specs,
        steps=20,
        batch_size=32,
        lr=1e-3,
        seed=0,
        device=torch.device("cpu"),
        hparams={},
        curve_points=2,
        evaluate_policy=lambda policy, final: {"reward": 0.0},
        **kwargs,
    )


def same_weights(a, b) -> bool:
    a, b = a["policy"].state_dict(), b["policy"].state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_restores_torchs_random_stream(logged):
    # CQL draws its random actions from torch's global generator.
    states: list[dict] = []
    full = train_tiny("cql", logged, on_checkpoint=states.append)
    assert [s["step"] for s in states] == [10]
    # The state is a copy: resuming from it twice gives the same run twice.
    for _ in range(2):
        torch.manual_seed(123)
        resumed = train_tiny("cql", logged, resume=states[0])
        assert resumed["curve"] == full["curve"] and same_weights(resumed, full)
    other_stream = dict(states[0], torch_rng=torch.manual_seed(123).get_state())
    assert not same_weights(train_tiny("cql", logged, resume=other_stream), full)


def test_resume_refuses_a_state_that_does_not_fit(logged):
    states: list[dict] = []
    train_tiny("bc", logged, on_checkpoint=states.append)
    with pytest.raises(ValueError, match=r"(?s)does not fit this run: .* for IQLLoss.*Missing key"):
        train_tiny("iql", logged, resume=states[0])
    with pytest.raises(ValueError, match=r"at step 5, not one of the learning-curve points \[10\]"):
        train_tiny("bc", logged, resume=dict(states[0], step=5))
    with pytest.raises(ValueError, match=r"training state lacks \['sampler_rng'\]"):
        train_tiny("bc", logged, resume={k: v for k, v in states[0].items() if k != "sampler_rng"})
