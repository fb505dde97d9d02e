"""The DDP learner on 2 gloo ranks: the global filter equals one process on the whole batch,
the per-rank filter keeps kappa equal, a dead rank ends the run, a resume needs the same
world size."""

from __future__ import annotations

import pytest
import torch

from drpo_rl.algorithms import build
from drpo_rl.models import PolicySpecs


def _one_process(inputs):
    torch.manual_seed(0)
    algo = build("drpo", PolicySpecs(obs_dim=4, num_items=6), kappa=0.3, num_cells=8)
    for key, module in algo.loss_modules.items():
        module.load_state_dict(inputs["initial"][key])
    terms = [algo.update(batch) for batch in inputs["batches"]]
    return algo.loss_modules["policy"].state_dict(), terms


def _assert_states_close(left, right):
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def ddp_folder(launch, tmp_path_factory):
    """Both scopes' runs of 2 ranks (one launch: starting ranks is what costs)."""
    folder = tmp_path_factory.mktemp("ddp")
    results = launch("ddp_steps", 2, folder)
    assert [r.returncode for r in results] == [0, 0], results[0].stderr + results[1].stderr
    return folder


def test_global_filter_step_equals_one_process_on_the_concatenated_batch(ddp_folder):
    tmp_path = ddp_folder
    inputs = torch.load(tmp_path / "inputs.pt", weights_only=False)
    expected, expected_terms = _one_process(inputs)
    ranks = [torch.load(tmp_path / f"rank-{r}-global.pt", weights_only=False) for r in range(2)]
    for rank in ranks:
        _assert_states_close(rank["losses"]["policy"], expected)
        for got, want in zip(rank["terms"], expected_terms, strict=True):
            # The filter's statistics are those of the whole batch on every rank.
            for key in ("kappa", "threshold", "kept_fraction", "batch_score_std"):
                torch.testing.assert_close(got[key], want[key], msg=key)
    # kappa moved (the adaptive rule ran), identically on both ranks and in one process.
    assert ranks[0]["losses"]["policy"]["kappa"] != inputs["initial"]["policy"]["kappa"]


def test_per_rank_filter_keeps_kappa_and_parameters_equal_on_every_rank(ddp_folder):
    ranks = [torch.load(ddp_folder / f"rank-{r}-rank.pt", weights_only=False) for r in range(2)]
    first, second = (rank["losses"]["policy"] for rank in ranks)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # Each rank filtered its own half: the thresholds differ, the kappa does not.
    thresholds = [rank["terms"][0]["threshold"] for rank in ranks]
    assert thresholds[0] != thresholds[1]


@pytest.fixture(scope="module")
def bandit_logs(tmp_path_factory):
    from drpo_rl.data import generate_logs

    path = tmp_path_factory.mktemp("logs") / "logs"
    generate_logs(
        "RecSimBanditDiscrete", "medium", 400, path=path, seed=0, num_items=20, progress=False
    )
    return path


def test_a_dead_rank_ends_the_others_and_a_resume_needs_the_same_world_size(
    launch, tmp_path, bandit_logs
):
    results = launch("train_dies", 2, tmp_path, str(bandit_logs), "3")
    assert results[1].returncode == 3
    assert results[0].returncode != 0
    assert "rank 0 of 2: a collective failed at step 4" in results[0].stderr
    # The checkpoint of step 2 is there, written by 2 ranks: one rank may not resume it.
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert (state["world_size"], state["step"]) == (2, 2)
    (refused,) = launch("train_runs", 1, tmp_path, str(bandit_logs))
    assert refused.returncode != 0
    assert "written by a run of 2 ranks, this run has 1" in refused.stderr
    # With 2 ranks it resumes and finishes.
    finished = launch("train_runs", 2, tmp_path, str(bandit_logs))
    assert [r.returncode for r in finished] == [0, 0], finished[0].stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert (tmp_path / "run" / "record.json").is_file()
