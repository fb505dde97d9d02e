"""Many runs per process: runs of one algorithm trained as one batched model.

The central property: run ``k`` of a stack ends with the parameters and the numbers of the
run trained alone with its seed (to float rounding), whatever else is in the stack.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

import drpo_rl.benchmark.run as runner
import drpo_rl.benchmark.stacked as stacked_module
from drpo_rl.algorithms import build
from drpo_rl.algorithms.stacked import NotStackableError, StackedAlgorithm
from drpo_rl.benchmark import make_config, run_benchmark
from drpo_rl.benchmark.grid import plan, schedule
from drpo_rl.benchmark.run import RunEnvs, open_logs
from drpo_rl.benchmark.stacked import train_stacked
from drpo_rl.benchmark.store import ResultStore, RunKey
from drpo_rl.benchmark.training import train
from drpo_rl.data import OfflineLogs
from drpo_rl.models import PolicySpecs

CONFIG = make_config("tiny", algorithms=("drpo",), references=(), steps=40, curve_points=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A benchmark folder with the tiny preset's logs of seed 0."""
    store = ResultStore(tmp_path_factory.mktemp("logs"))
    open_logs(CONFIG, store, "medium", 0, progress=False)
    return store


@pytest.fixture(scope="module")
def logged(store):
    """The tiny preset's logs of seed 0, their specs and an evaluator on 200 users."""
    rows = OfflineLogs(store.logs_path("medium", 0))[:]
    envs = RunEnvs(CONFIG)
    specs = PolicySpecs.from_env(envs.specs_env)

    def evaluate_policy(policy, final: bool):
        return runner.evaluate(policy, envs.evaluation(200), num_users=200, seed=7)

    return rows, specs, evaluate_policy


def arguments(logged, seed: int, algorithm: str = "drpo", **changes):
    rows, specs, evaluate_policy = logged
    args = {
        "algorithm": algorithm,
        "rows": rows,
        "specs": specs,
        "steps": 30,
        "batch_size": 64,
        "lr": 1e-3,
        "seed": seed,
        "device": torch.device("cpu"),
        "hparams": {"num_cells": 32},
        "curve_points": 2,
        "evaluate_policy": evaluate_policy,
    }
    args.update(changes)
    return args


def assert_close(expected, got, where: str = "") -> None:
    """Equal structure, numbers equal to float rounding (relative 1e-4)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and expected.keys() == got.keys(), where
        for name in expected:
            assert_close(expected[name], got[name], f"{where}.{name}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for index, (want, have) in enumerate(zip(expected, got, strict=True)):
            assert_close(want, have, f"{where}[{index}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-5), where
    else:
        assert got == expected, where


def assert_same_run(alone: dict, stacked: dict) -> None:
    expected, got = alone["policy"].state_dict(), stacked["policy"].state_dict()
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5)
    for field in ("curve", "metrics", "monitor", "hparams", "train_rows"):
        assert_close(alone[field], stacked[field], field)


@pytest.mark.parametrize("algorithm", ["drpo", "awr"])
def test_run_k_of_a_stack_of_8_equals_the_run_alone(logged, algorithm):
    seeds = range(8)
    stacked = train_stacked([arguments(logged, s, algorithm) for s in seeds])
    for seed in (0, 5):
        assert_same_run(train(**arguments(logged, seed, algorithm)), stacked[seed])
    # The runs differ from each other: each has its own initialisation and batches.
    first, second = (r["policy"].state_dict() for r in stacked[:2])
    assert not all(torch.equal(first[n], second[n]) for n in first)


def test_per_run_learning_rates_and_kappas_stay_per_run(logged):
    changes = [
        {"lr": 1e-3, "hparams": {"num_cells": 32, "kappa": 0.5}},
        {"lr": 3e-3, "hparams": {"num_cells": 32, "kappa": 0.2}},
        {"lr": 3e-4, "hparams": {"num_cells": 32, "kappa": 0.3}},
    ]
    stacked = train_stacked([arguments(logged, 1, **c) for c in changes])
    kappas = [r["curve"][-1]["kappa"] for r in stacked]
    assert len(set(kappas)) == 3
    for change, result in zip(changes, stacked, strict=True):
        assert_same_run(train(**arguments(logged, 1, **change)), result)
        assert result["hparams"]["lr"] == change["lr"]


def test_runs_of_other_shapes_are_refused_with_the_place_named(logged):
    runs = [
        arguments(logged, 0),
        arguments(logged, 1, hparams={"num_cells": 16}),
    ]
    with pytest.raises(NotStackableError, match=r"run 1 has other tensor shapes than run 0 \(at"):
        train_stacked(runs)
    settings = [
        arguments(logged, 0),
        arguments(logged, 1, hparams={"num_cells": 32, "adaptive": False}),
    ]
    with pytest.raises(NotStackableError, match=r"the runs differ in adaptive \(True and False\)"):
        train_stacked(settings)
    with pytest.raises(NotStackableError, match="different steps"):
        train_stacked([arguments(logged, 0), arguments(logged, 0, steps=20)])


def test_losses_that_vmap_refuses_are_not_stackable():
    specs = PolicySpecs(obs_dim=4, action_dim=2)
    batch = TensorDict(
        {
            "observation": torch.randn(2, 8, 4),
            "action": torch.randn(2, 8, 2),
            "behavior_log_prob": torch.zeros(2, 8),
            ("next", "reward"): torch.rand(2, 8, 1),
            ("next", "done"): torch.ones(2, 8, 1, dtype=torch.bool),
            ("next", "terminated"): torch.ones(2, 8, 1, dtype=torch.bool),
            ("next", "observation"): torch.randn(2, 8, 4),
        },
        [2, 8],
    )
    stack = StackedAlgorithm([build("iql", specs, num_cells=8) for _ in range(2)])
    with pytest.raises(NotStackableError, match="iql's losses cannot run under torch.vmap"):
        stack.check(batch)
    shared = [build("drpo-q", specs, num_cells=8) for _ in range(2)]
    with pytest.raises(NotStackableError, match="shares tensors between its loss modules"):
        StackedAlgorithm(shared)


def test_schedule_groups_by_algorithm_and_resumed_step(store):
    config = make_config("tiny", algorithms=("drpo", "bc"), seeds=(0, 1, 2))
    todo = plan(config)
    resumed = {RunKey("medium", "drpo", 2): 10}
    units = schedule(config, todo, store, resumed, max_stack=2)
    as_text = [[str(k) for k in unit] for unit in units]
    assert as_text[:4] == [
        ["medium/bc-expert/seed-0", "medium/bc-expert/seed-1"],
        ["medium/drpo/seed-0", "medium/drpo/seed-1"],
        ["medium/bc/seed-0", "medium/bc/seed-1"],
        ["medium/bc-expert/seed-2"],
    ]
    singles = {str(unit[0]) for unit in units if len(unit) == 1}
    assert {"medium/drpo/seed-2", "medium/bc/seed-2", "medium/oracle/seed-0"} <= singles
    assert sorted(k for unit in units for k in unit) == sorted(todo)


def records_by_key(report) -> dict[str, dict]:
    return {f"{r['scenario']}/{r['algorithm']}/{r['seed']}": r for r in report.records}


def assert_same_records(expected, got, *, exact: bool) -> None:
    want, have = records_by_key(expected), records_by_key(got)
    assert want.keys() == have.keys()
    for key, record in want.items():
        for field in ("metrics", "curve", "monitor", "hparams"):
            if exact:
                assert have[key][field] == record[field], (key, field)
            else:
                assert_close(record[field], have[key][field], f"{key}.{field}")


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    """The drpo and apg runs of seeds 0, 1, 2 (monitored; apg has a value critic), each
    algorithm's as one stack, uninterrupted, and run by run."""
    config = make_config(
        "tiny", algorithms=("drpo", "apg"), references=(), seeds=(0, 1, 2), steps=40, curve_points=4
    )
    quiet = lambda *args: None  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        # Evaluated in one batched rollout per stack here too (by default on CUDA only).
        patch.setattr(stacked_module, "BATCHED_EVALUATION", ("cpu",))
        out = tmp_path_factory.mktemp("stacked")
        stacked = run_benchmark(config, out, progress=False, echo=quiet)
    alone = run_benchmark(
        config, tmp_path_factory.mktemp("alone"), progress=False, echo=quiet, max_stack=1
    )
    return config, stacked, alone


def test_a_stacked_benchmark_gives_the_run_by_run_numbers(three_seeds):
    _, stacked, alone = three_seeds
    assert_same_records(alone, stacked, exact=False)


class Interrupted(Exception):
    pass


def raise_at_call(monkeypatch, owner, name: str, call: int) -> None:
    """Make the ``call``-th call of ``owner.name`` raise ``Interrupted``."""
    calls = iter(range(1, 10_000))
    real = getattr(owner, name)

    def interrupted(*args, **kwargs):
        if next(calls) == call:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)


@pytest.mark.parametrize(
    ("owner", "name", "call", "messages"),
    [
        # The drpo stack's batched evaluations: the 2nd (step 20) is interrupted, after
        # the checkpoints at step 10: every run resumes from 10, as one stack again.
        (
            stacked_module,
            "evaluate_stacked",
            2,
            [f"resuming medium/drpo/seed-{s} from step 10 of 40" for s in range(3)],
        ),
        # Checkpoints: seeds 0, 1, 2 at step 10, then seed 0 at 20; seed 1's at 20 is
        # interrupted: seed 0 resumes from 20 alone, seeds 1 and 2 from 10 as a stack.
        (
            ResultStore,
            "save_checkpoint",
            5,
            ["resuming medium/drpo/seed-0 from step 20 of 40"]
            + [f"resuming medium/drpo/seed-{s} from step 10 of 40" for s in (1, 2)],
        ),
    ],
)
def test_an_interrupted_stack_resumes_to_the_uninterrupted_numbers(
    three_seeds, tmp_path, monkeypatch, owner, name, call, messages
):
    config, stacked, _ = three_seeds
    monkeypatch.setattr(stacked_module, "BATCHED_EVALUATION", ("cpu",))
    raise_at_call(monkeypatch, owner, name, call)
    with pytest.raises(Interrupted):
        run_benchmark(config, tmp_path, progress=False, echo=lambda *args: None)
    monkeypatch.undo()
    monkeypatch.setattr(stacked_module, "BATCHED_EVALUATION", ("cpu",))
    heard: list[str] = []
    resumed = run_benchmark(config, tmp_path, progress=False, echo=heard.append)
    assert heard == messages
    assert not list(tmp_path.rglob("*.ckpt.pt"))
    # All resumed together: the same stack, the same numbers exactly.
    assert_same_records(stacked, resumed, exact=name == "evaluate_stacked")


def test_unstackable_algorithms_fall_back_with_a_one_line_note(tmp_path):
    config = make_config("tiny", algorithms=("iql",), references=(), seeds=(0, 1), steps=4)
    heard: list[str] = []
    report = run_benchmark(config, tmp_path, progress=False, echo=heard.append)
    assert len(report.ran) == 2
    notes = [m for m in heard if m.startswith("iql: trained run by run")]
    assert len(notes) == 1 and "\n" not in notes[0] and "torch.vmap" in notes[0]


def test_out_of_memory_shrinks_the_stack_and_says_so(tmp_path, monkeypatch):
    config = make_config("tiny", algorithms=("bc",), references=(), seeds=(0, 1, 2, 3), steps=4)
    real = stacked_module.train_stacked
    sizes: list[int] = []

    def train_stacked_small(runs, **kwargs):
        sizes.append(len(runs))
        if len(runs) > 2:
            raise torch.OutOfMemoryError("out of memory")
        return real(runs, **kwargs)

    monkeypatch.setattr(stacked_module, "train_stacked", train_stacked_small)
    heard: list[str] = []
    report = run_benchmark(config, tmp_path, progress=False, echo=heard.append)
    assert sizes == [4, 2, 2]
    assert heard == ["bc: out of memory for a stack of 4 runs; stacking 2 and 2"]
    assert sorted(str(k) for k in report.ran) == [f"medium/bc/seed-{s}" for s in range(4)]


def test_bench_command_refuses_a_stack_size_below_one(tmp_path, capsys):
    from drpo_rl.cli import main

    out = tmp_path / "out"
    assert main(["bench", "--preset", "tiny", "--max-stack", "0", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "drpo-rl bench: error: max_stack: expected a positive integer, got 0"
    assert not out.exists()


def tiny_stack_inputs():
    torch.manual_seed(0)
    specs = PolicySpecs(obs_dim=4, action_dim=2)
    batch = TensorDict(
        {
            "observation": torch.randn(2, 16, 4),
            "action": torch.randn(2, 16, 2),
            ("next", "reward"): torch.rand(2, 16, 1),
        },
        [2, 16],
    )
    return specs, batch


def stacked_terms(specs, batch, *, compile: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    stack = StackedAlgorithm([build("drpo", specs, num_cells=8) for _ in range(2)], compile=compile)
    stack.update(batch)
    return stack.update(batch)


def test_compile_without_a_compiler_runs_uncompiled_and_says_so(monkeypatch):
    specs, batch = tiny_stack_inputs()
    eager = stacked_terms(specs, batch, compile=False)

    def no_compiler(function):
        def compiled(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\ndetails")

        return compiled

    monkeypatch.setattr(torch, "compile", no_compiler)
    with pytest.warns(
        UserWarning,
        match=r"failed \(InvalidCxxCompiler: No working C\+\+ compiler found\); it runs uncompiled",
    ):
        fallback = stacked_terms(specs, batch, compile=True)
    assert fallback.keys() == eager.keys()
    for name in eager:
        assert torch.equal(fallback[name], eager[name]), name


@pytest.mark.slow
# Raised inside torch.compile's own imports, not by the code under test.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_stack_gives_the_eager_numbers():
    specs, batch = tiny_stack_inputs()
    eager = stacked_terms(specs, batch, compile=False)
    compiled = stacked_terms(specs, batch, compile=True)
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-5, atol=1e-6)


def test_a_stacks_policies_evaluated_in_one_rollout_score_as_each_alone(logged):
    from drpo_rl.evaluation import evaluation_env
    from drpo_rl.evaluation.online import evaluate_stacked

    _, specs, _ = logged
    algos = []
    for seed in range(3):
        torch.manual_seed(seed)
        algos.append(build("drpo", specs, num_cells=16))
    stack = StackedAlgorithm(algos)
    envs = [evaluation_env(CONFIG.env_spec, 150, batch_size=100) for _ in algos]
    seeds = [11, 12, 13]
    together = evaluate_stacked(stack.policy(), envs, num_users=150, seeds=seeds)
    for algo, env, seed, metrics in zip(algos, envs, seeds, together, strict=True):
        alone = runner.evaluate(algo.policy, env, num_users=150, seed=seed)
        assert_close(alone, metrics)
        assert metrics["num_users"] == 150
    assert together[0]["reward"] != together[1]["reward"]
    with pytest.raises(ValueError, match="expected one seed per env, got 3 envs and 2 seeds"):
        evaluate_stacked(stack.policy(), envs, num_users=150, seeds=seeds[:2])


def test_a_stack_refuses_a_bad_batch_like_one_run_and_still_stacks_a_good_one():
    """The loss-boundary check runs on the stacked batch before the vmap (inside it, it is
    skipped): a NaN reward is refused naming the entry, not taken for "not stackable"."""
    specs, batch = tiny_stack_inputs()
    torch.manual_seed(1)
    stack = StackedAlgorithm([build("drpo", specs, num_cells=8) for _ in range(2)])
    bad = batch.clone()
    bad["next", "reward"][1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"^drpo: .*\('next', 'reward'\), got 1 of 32 rows"):
        stack.update(bad)
    terms = stack.update(batch)  # vmap ran the losses, their own check skipped inside it
    assert terms["loss_objective"].shape == (2,) and torch.isfinite(terms["loss_objective"]).all()
