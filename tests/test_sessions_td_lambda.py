"""The TD(lambda) score (``score="td"``, ``lmbda > 0``): lambda-returns within the batch's
session segments, TD(0) for random rows, the TD(0) score unchanged at ``lmbda=0``."""

import pytest
import torch
from tensordict import TensorDict
from torchrl.data import SliceSampler
from torchrl.objectives.value.functional import td0_return_estimate

from drpo_rl.algorithms import build
from drpo_rl.algorithms.registry import resolve_options
from drpo_rl.algorithms.scores import TD_SCORE_KEY, segment_ends, td_scored
from drpo_rl.benchmark.presets import make_config
from drpo_rl.data import OfflineLogs, generate_logs
from drpo_rl.data.layout import STEP_KEY, TRAJ_KEY
from drpo_rl.models import PolicySpecs
from envs import make_env

WORLD = {"num_items": 30, "embedding_dim": 8, "max_length": 5, "patience": 2.5}
QUIET_WORLD = {**WORLD, "progress": False}
GAMMA, LMBDA = 0.5, 0.5


def value_of_next(td):
    """The hand-made V: a next observation's first entry is its value."""
    return td["observation"][..., :1]


def hand_session_batch():
    """Session 5 (3 steps, the user leaves) then session 9 (4 steps, cut by the window)."""
    reward = [1.0, 2.0, 4.0, 1.0, 0.0, 2.0, 1.0]
    next_value = [2.0, 4.0, 8.0, 4.0, 2.0, 0.0, 6.0]  # V(s'); 8 is never read (terminated)
    terminated = torch.tensor([[False], [False], [True], [False], [False], [False], [False]])
    truncated = torch.tensor([[False], [False], [False], [False], [False], [False], [True]])
    return TensorDict(
        {
            "observation": torch.zeros(7, 2),
            ("next", "observation"): torch.tensor(next_value).unsqueeze(-1).expand(7, 2),
            ("next", "reward"): torch.tensor(reward).unsqueeze(-1),
            ("next", "terminated"): terminated,
            ("next", "truncated"): truncated,
            ("next", "done"): terminated | truncated,
            TRAJ_KEY: torch.tensor([5, 5, 5, 9, 9, 9, 9]),
            STEP_KEY: torch.tensor([[0], [1], [2], [0], [1], [2], [3]]),
        },
        [7],
    )


# G_t = r_t + gamma ((1 - lmbda) V(s_{t+1}) + lmbda G_{t+1}), gamma = lmbda = 0.5, by hand:
# session 5: G_2 = 4 (terminated); G_1 = 2 + 0.5 (0.5 * 4 + 0.5 * 4) = 4;
#            G_0 = 1 + 0.5 (0.5 * 2 + 0.5 * 4) = 2.5.
# session 9: G_3 = 1 + 0.5 * 6 = 4 (truncated: bootstraps); G_2 = 2 + 0.5 (0 + 0.5 * 4) = 3;
#            G_1 = 0 + 0.5 (0.5 * 2 + 0.5 * 3) = 1.25;
#            G_0 = 1 + 0.5 (0.5 * 4 + 0.5 * 1.25) = 2.3125.
HAND_RETURNS = [2.5, 4.0, 4.0, 2.3125, 1.25, 3.0, 4.0]
# TD(0) targets r + gamma (1 - terminated) V(s').
HAND_TD0 = [2.0, 4.0, 4.0, 3.0, 1.0, 2.0, 4.0]


def lambda_score(batch, lmbda=LMBDA):
    return td_scored(value_of_next, GAMMA, lmbda)(batch)[TD_SCORE_KEY][:, 0]


def test_lambda_returns_of_a_terminated_and_a_truncated_session_match_the_hand_values():
    batch = hand_session_batch()
    torch.testing.assert_close(lambda_score(batch), torch.tensor(HAND_RETURNS))
    # lmbda = 1: the discounted return, bootstrapped at the truncated end only.
    session_5 = [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4.0]
    session_9 = [
        1 + 0.5 * 0 + 0.25 * 2 + 0.125 * 1 + 0.0625 * 6,
        0 + 0.5 * 2 + 0.25 * 1 + 0.125 * 6,
        2 + 0.5 * 1 + 0.25 * 6,
        1 + 0.5 * 6,
    ]
    torch.testing.assert_close(lambda_score(batch, lmbda=1.0), torch.tensor(session_5 + session_9))
    # A slice starting mid-session (steps 1..3 of session 9) is the lambda-return from there.
    torch.testing.assert_close(lambda_score(batch[4:]), torch.tensor(HAND_RETURNS[4:]))
    # No discount: the reward (TorchRL's vectorised form has no term left there; the loop does).
    no_discount = td_scored(value_of_next, 0.0, LMBDA)(batch)[TD_SCORE_KEY]
    assert torch.equal(no_discount, batch["next", "reward"])
    # Batch dims [1, 7] are flattened in batch order: the same returns.
    two_dims = td_scored(value_of_next, GAMMA, LMBDA)(batch.reshape(1, 7))[TD_SCORE_KEY]
    torch.testing.assert_close(two_dims[0, :, 0], torch.tensor(HAND_RETURNS))


def test_a_shuffled_batch_keeps_each_row_in_its_own_segment():
    batch = hand_session_batch()
    # The sessions swapped: the same values per row.
    swapped = torch.tensor([3, 4, 5, 6, 0, 1, 2])
    torch.testing.assert_close(lambda_score(batch[swapped]), torch.tensor(HAND_RETURNS)[swapped])
    # Interleaved, no row is followed by its own next step: each is its own segment and
    # bootstraps (TD(0)), never chained to the unrelated row after it.
    interleaved = torch.tensor([0, 3, 1, 4, 2, 5, 6])
    assert segment_ends(batch[interleaved]).tolist() == [True] * 5 + [False, True]
    expected = torch.tensor(HAND_TD0)[interleaved]
    expected[5] = HAND_RETURNS[5]  # steps 2 and 3 of session 9 stay adjacent
    torch.testing.assert_close(lambda_score(batch[interleaved]), expected)
    # Same session id but a step skipped: the run is cut too.
    gap = batch[torch.tensor([3, 5, 6])]
    assert segment_ends(gap).tolist() == [True, False, True]


def test_rows_without_session_keys_are_their_own_segments_and_half_keys_are_refused():
    batch = hand_session_batch()
    bandit = batch.exclude(TRAJ_KEY, STEP_KEY)
    torch.testing.assert_close(lambda_score(bandit), torch.tensor(HAND_TD0))
    with pytest.raises(ValueError, match=r"holds 'step_count' but not \('collector', 'traj_ids'\)"):
        lambda_score(batch.exclude(TRAJ_KEY))


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """12 steps of 8 UserSession envs, medium behaviour."""
    path = tmp_path_factory.mktemp("logs") / "medium"
    return generate_logs("UserSession", "medium", 96, path=path, num_envs=8, seed=3, **QUIET_WORLD)


def test_random_rows_get_the_td0_target(logs):
    rows = logs[:].reshape(-1)
    shuffled = rows[torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(0))]
    assert segment_ends(shuffled).all()  # under this seed no row precedes its next step
    expected = td_scored(value_of_next, 0.9)(shuffled)[TD_SCORE_KEY]
    got = td_scored(value_of_next, 0.9, lmbda=0.9)(shuffled)[TD_SCORE_KEY]
    torch.testing.assert_close(got, expected)


def test_lmbda_zero_is_the_td0_score_bit_for_bit(logs):
    rows = logs[:].reshape(-1)
    reward, terminated = rows["next", "reward"], rows["next", "terminated"]
    target = td0_return_estimate(0.9, value_of_next(rows["next"]), reward, terminated=terminated)
    assert torch.equal(td_scored(value_of_next, 0.9, lmbda=0.0)(rows)[TD_SCORE_KEY], target)
    specs = PolicySpecs.from_env(make_env("UserSession", **WORLD))
    updates = []
    for extra in ({}, {"lmbda": 0.0}):
        torch.manual_seed(0)
        algo = build("awr", specs, score="td", num_cells=16, **extra)
        updates.append((algo.update(rows), list(algo.policy.parameters())))
    (terms_a, params_a), (terms_b, params_b) = updates
    assert all(torch.equal(terms_a[k], terms_b[k]) for k in terms_a)
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))


def test_lmbda_outside_0_1_or_without_the_td_score_is_refused_at_config_time():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"lmbda: expected a finite number in \[0, 1\], got"):
            resolve_options("awr", score="td", lmbda=bad)
    with pytest.raises(ValueError, match="lmbda: only score='td' uses it .* score='return_to_go'"):
        resolve_options("crr", score="return_to_go", lmbda=0.9)
    with pytest.raises(ValueError, match=r"hparams of 'awr': lmbda: expected .* got 2"):
        make_config("tiny", algorithms=("awr",), hparams={"awr": {"score": "td", "lmbda": 2}})
    # On session logs the check sees the score the run trains with (return-to-go).
    with pytest.raises(ValueError, match="got lmbda=0.9 with score='return_to_go'"):
        make_config("tiny", env="UserSession", algorithms=("awr",), hparams={"awr": {"lmbda": 0.9}})
    assert resolve_options("apg", score="td", lmbda=1.0)["lmbda"] == 1.0


def test_awr_trains_on_slices_with_the_td_lambda_score(logs):
    torch.manual_seed(0)
    slices = OfflineLogs(
        logs.root,
        batch_size=4 * 4,
        sampler=SliceSampler(slice_len=4, traj_key=TRAJ_KEY, strict_length=False),
    )
    batch = slices.sample()
    # The lambda path is taken: rows inside a slice differ from their TD(0) target.
    inside = ~segment_ends(batch) & ~batch["next", "terminated"][:, 0]
    assert inside.any()
    td0 = td_scored(value_of_next, 0.9)(batch)[TD_SCORE_KEY][:, 0]
    td_lambda = td_scored(value_of_next, 0.9, lmbda=0.9)(batch)[TD_SCORE_KEY][:, 0]
    assert not torch.allclose(td_lambda[inside], td0[inside])
    specs = PolicySpecs.from_env(make_env("UserSession", **WORLD))
    algo = build("awr", specs, score="td", lmbda=0.9, gamma=0.9, num_cells=16)
    before = [p.detach().clone() for p in algo.policy.parameters()]
    for _ in range(2):
        terms = algo.update(slices.sample())
    assert all(torch.isfinite(v).all() for v in terms.values())
    after = list(algo.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
