"""Session logs: trajectory ids, step index, done/terminated/truncated, propensities and the
stored return-to-go, under every behaviour mixture; SliceSampler over them."""

import pytest
import torch
from torchrl.data import SliceSampler
from torchrl.envs import Reward2GoTransform

from drpo_rl.data import OfflineLogs, generate_logs
from drpo_rl.data.behavior import AGENTS
from drpo_rl.data.layout import RETURN_TO_GO_KEY, STEP_KEY, TRAJ_KEY

CAP = 5
WORLD = {"num_items": 30, "embedding_dim": 8, "max_length": CAP, "patience": 2.5}
ENVS, STEPS = 8, 12


def _logs(path, scenario="medium", gamma=0.9, **kwargs):
    return generate_logs(
        "UserSession",
        scenario,
        ENVS * STEPS,
        path=path,
        seed=3,
        num_envs=ENVS,
        progress=False,
        gamma=gamma,
        **WORLD,
        **kwargs,
    )


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    return _logs(tmp_path_factory.mktemp("logs") / "medium")


def _check_sessions(data):
    """Every invariant of session logs, on [env, time] rows."""
    ids, step = data[TRAJ_KEY], data[STEP_KEY][..., 0]
    nxt = data["next"]
    done, term, trunc = (nxt[k][..., 0] for k in ("done", "terminated", "truncated"))
    assert torch.equal(done, term | trunc) and not (term & trunc).any()
    # A new trajectory id exactly after each done, the step index restarting at 0.
    assert torch.equal(ids[:, 1:] != ids[:, :-1], done[:, :-1])
    assert torch.equal(step[:, 1:], torch.where(done[:, :-1], 0, step[:, :-1] + 1))
    assert (step[:, 0] == 0).all() and (step < CAP).all()
    # Truncated only at the cap or at the end of the logging window; every stream ends.
    at_cap = step == CAP - 1
    assert not (trunc[:, :-1] & ~at_cap[:, :-1]).any()
    assert done[:, -1].all()
    log_prob = data["behavior_log_prob"]
    assert torch.isfinite(log_prob).all() and (log_prob <= 0).all()


@pytest.mark.parametrize(
    "scenario",
    ["clean", "medium", "extreme", "noise-40", {name: 1 / len(AGENTS) for name in AGENTS}],
    ids=["clean", "medium", "extreme", "noise-40", "every-agent"],
)
def test_every_behaviour_mixture_logs_well_formed_sessions(tmp_path, scenario):
    logs = _logs(tmp_path / "logs", scenario)
    data = logs[:]
    assert data.shape == (ENVS, STEPS)
    _check_sessions(data)
    assert logs.metadata["return_to_go"] == {"gamma": 0.9}


def test_leaving_terminates_and_the_cap_truncates(medium):
    data = medium[:]
    nxt = data["next"]
    step = data[STEP_KEY][..., 0]
    assert nxt["terminated"].any()  # patience 2.5: some users leave
    capped = nxt["truncated"][..., 0] & (step == CAP - 1)
    assert capped.any()  # and some stay to the cap, which is no termination


def test_return_to_go_matches_a_hand_computed_session(medium):
    data = medium[:]
    reward, done = data["next", "reward"][..., 0], data["next", "done"][..., 0]
    stored = data[RETURN_TO_GO_KEY][..., 0]
    for env in range(ENVS):
        expected, later = torch.zeros(STEPS), 0.0
        for t in reversed(range(STEPS)):
            later = reward[env, t] + (0.0 if done[env, t] else 0.9 * later)
            expected[t] = later
        torch.testing.assert_close(stored[env], expected)


def test_reward2go_transform_on_all_rows_agrees_with_the_stored_values(medium):
    # The path the read-transform refusal points to: the transform's write pass on logs[:].
    rtg = Reward2GoTransform(gamma=0.9, in_keys=[("next", "reward")], out_keys=["rtg"])
    data = rtg.inv(medium[:])
    torch.testing.assert_close(data["rtg"], data[RETURN_TO_GO_KEY])


def test_gamma_changes_the_stored_return_to_go_and_the_identity(tmp_path, medium):
    undiscounted = _logs(tmp_path / "g1", gamma=1.0)[:]
    data = medium[:]
    first = data[STEP_KEY][..., 0] == 0
    # Same logs otherwise; gamma 1 sums the whole rest of the session.
    torch.testing.assert_close(undiscounted["next", "reward"], data["next", "reward"])
    assert (undiscounted[RETURN_TO_GO_KEY][first] >= data[RETURN_TO_GO_KEY][first]).all()
    with pytest.raises(ValueError, match="return_to_go.gamma: stored 1.0, requested 0.5"):
        _logs(tmp_path / "g1", gamma=0.5)


@pytest.mark.parametrize("slice_len", [CAP, 3])
def test_slice_sampler_cuts_whole_and_partial_sessions(medium, slice_len):
    logs = OfflineLogs(
        medium.root,
        batch_size=6 * slice_len,
        sampler=SliceSampler(slice_len=slice_len, traj_key=TRAJ_KEY, strict_length=False),
    )
    for _ in range(5):
        batch = logs.sample()
        # The sampler marks each slice's end truncated (and done): it cuts, the user stayed.
        ends = torch.nonzero(batch["next", "truncated"][:, 0])[:, 0] + 1
        starts = torch.cat([torch.tensor([0]), ends[:-1]])
        assert ends[-1] == len(batch)
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            piece = batch[start:end]
            assert end - start <= slice_len
            assert (piece[TRAJ_KEY] == piece[TRAJ_KEY][0]).all()
            steps = piece[STEP_KEY][:, 0]
            assert torch.equal(steps.diff(), torch.ones(len(steps) - 1, dtype=steps.dtype))
            # Leaving can only be a slice's last step.
            assert not piece["next", "terminated"][:-1].any()
            if slice_len == CAP:  # whole sessions: from their first step
                assert steps[0] == 0


def test_reward2go_as_a_read_transform_is_refused(medium):
    with pytest.raises(ValueError, match="Reward2GoTransform acts only when data is written"):
        OfflineLogs(medium.root, transform=Reward2GoTransform(gamma=0.9))
