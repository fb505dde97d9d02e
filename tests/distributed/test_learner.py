"""The DDP learner on 2 gloo ranks: the global filter equals one process on the whole batch,
the per-rank filter keeps kappa equal, a dead rank ends the run, a resume needs the same
world size."""

from __future__ import annotations

import pytest
import torch

from drpo_rl.algorithms import build
from drpo_rl.distributed.train import train_distributed
from drpo_rl.models import PolicySpecs


@pytest.fixture(scope="module")
def bandit_logs(tmp_path_factory):
    from drpo_rl.data import generate_logs

    path = tmp_path_factory.mktemp("logs") / "logs"
    generate_logs(
        "RecSimBanditDiscrete", "medium", 400, path=path, seed=0, num_items=20, progress=False
    )
    return path


@pytest.fixture(scope="module")
def learner(launch, tmp_path_factory, bandit_logs):
    """2 ranks: both scopes' DDP steps, then a training run in which rank 1 dies at step 3
    (one launch: starting the ranks is what costs)."""
    folder = tmp_path_factory.mktemp("ddp")
    return folder, launch("learner", 2, folder, str(bandit_logs), "3")


def _one_process(inputs, masked):
    torch.manual_seed(0)
    algo = build("drpo", PolicySpecs(obs_dim=4, num_items=6), kappa=0.3, num_cells=8)
    if masked:
        algo.loss_modules["policy"].set_keys(group="user")
    for key, module in algo.loss_modules.items():
        module.load_state_dict(inputs["initial"][key])
    terms = [algo.update(batch) for batch in inputs["batches"]]
    return algo.loss_modules["policy"].state_dict(), terms


def _ranks(folder, scope):
    return [torch.load(folder / f"rank-{r}-{scope}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("run, masked", [("global", False), ("masked", True)])
def test_global_filter_step_equals_one_process_on_the_concatenated_batch(learner, run, masked):
    """``masked``: user groups spanning both ranks and a validity mask keeping a different
    number of rows on each (the rescaling of the ranks' weights)."""
    folder, _ = learner
    inputs = torch.load(folder / f"inputs-{run}.pt", weights_only=False)
    expected, expected_terms = _one_process(inputs, masked)
    ranks = _ranks(folder, run)
    for rank in ranks:
        got = rank["losses"]["policy"]
        assert got.keys() == expected.keys()
        for key in got:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
        for step, want in zip(rank["terms"], expected_terms, strict=True):
            # The filter's statistics are those of the whole batch on every rank.
            for key in (
                "kappa",
                "threshold",
                "kept_fraction",
                "batch_score_std",
                "weightless_groups",
            ):
                torch.testing.assert_close(step[key], want[key], msg=key)
    # kappa moved (the adaptive rule ran), identically on both ranks and in one process.
    assert ranks[0]["losses"]["policy"]["kappa"] != inputs["initial"]["policy"]["kappa"]


def test_per_rank_filter_keeps_kappa_and_parameters_equal_on_every_rank(learner):
    first, second = (rank["losses"]["policy"] for rank in _ranks(learner[0], "rank"))
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # Each rank filtered its own half: the thresholds differ, the kappa does not.
    thresholds = [rank["terms"][0]["threshold"] for rank in _ranks(learner[0], "rank")]
    assert thresholds[0] != thresholds[1]


def test_a_dead_rank_ends_the_others_with_a_clear_error(learner):
    folder, results = learner
    assert results[1].returncode == 3
    assert results[0].returncode != 0
    assert "rank 0 of 2: a collective failed at step 4" in results[0].stderr
    # The checkpoint of step 2 stays, written by 2 ranks.
    state = torch.load(folder / "run" / "checkpoint.pt", weights_only=False)
    assert (state["world_size"], state["step"]) == (2, 2)


def test_a_resume_with_another_world_size_is_refused(learner, bandit_logs, one_rank_group):
    with pytest.raises(ValueError, match="written by a run of 2 ranks, this run has 1"):
        train_distributed(bandit_logs, "drpo", steps=4, batch_size=8, out=learner[0] / "run")


class _Stop(Exception):
    pass


def test_a_resumed_run_ends_with_the_policy_of_an_uninterrupted_one(
    bandit_logs, tmp_path, one_rank_group
):
    options = {"steps": 6, "batch_size": 8, "hparams": {"num_cells": 8}, "checkpoint_every": 2}
    train_distributed(bandit_logs, "drpo", out=tmp_path / "whole", **options)

    def stop_at_5(step, terms):
        if step == 5:
            raise _Stop

    with pytest.raises(_Stop):
        train_distributed(bandit_logs, "drpo", out=tmp_path / "cut", on_step=stop_at_5, **options)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 4
    train_distributed(bandit_logs, "drpo", out=tmp_path / "cut", **options)
    whole, cut = (torch.load(tmp_path / run / "policy.pt") for run in ("whole", "cut"))
    assert whole.keys() == cut.keys()
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
