"""Broken session logs are refused, naming the trajectory and the row; nothing is
re-ordered or dropped."""

import pytest
import torch
from tensordict import TensorDict

from drpo_rl.data import OfflineLogs
from drpo_rl.data.layout import STEP_KEY, TRAJ_KEY
from drpo_rl.data.sessions import check_sessions


def _sessions():
    """Two env streams of [env, time] logs: sessions 0 (3 steps), 1 (2) | 2 (4), 3 (1)."""
    ids = torch.tensor([[0, 0, 0, 1, 1], [2, 2, 2, 2, 3]])
    step = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]])
    done = torch.tensor([[0, 0, 1, 0, 1], [0, 0, 0, 1, 1]], dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.randn(2, 5, 3),
            TRAJ_KEY: ids,
            STEP_KEY: step.unsqueeze(-1),
            ("next", "done"): done.unsqueeze(-1),
            ("next", "reward"): torch.rand(2, 5, 1),
        },
        [2, 5],
    )


def test_well_formed_sessions_pass():
    rows = _sessions()
    check_sessions(rows, max_length=4)
    check_sessions(rows.reshape(-1), max_length=4)  # flat, in logged order


def test_a_trajectory_id_restarting_mid_stream_is_refused():
    rows = _sessions()
    rows[TRAJ_KEY][1, 4] = 0  # session 0 again, after other steps
    with pytest.raises(ValueError, match=r"trajectory 0 restarts at row \[1, 4\] .*row \[0, 0\]"):
        check_sessions(rows)


def test_steps_out_of_order_are_refused():
    rows = _sessions()
    rows[STEP_KEY][1, 1:3, 0] = torch.tensor([2, 1])
    with pytest.raises(
        ValueError, match=r"trajectory 2 has step 2 at row \[1, 1\] after step 0 \(expected 1\)"
    ):
        check_sessions(rows)


def test_done_in_the_middle_of_a_trajectory_is_refused():
    rows = _sessions().reshape(-1)
    rows["next", "done"][6] = True
    with pytest.raises(ValueError, match=r"trajectory 2 has \('next', 'done'\) at row 6 but goes"):
        check_sessions(rows)


def test_a_session_longer_than_the_cap_is_refused():
    with pytest.raises(
        ValueError, match=r"trajectory 2 has 4 steps from row \[1, 0\], more than .*max_length 3"
    ):
        check_sessions(_sessions(), max_length=3)


def test_writing_broken_sessions_writes_nothing(tmp_path):
    rows = _sessions()
    rows[TRAJ_KEY][0, 4] = 0
    with pytest.raises(ValueError, match="trajectory 0 restarts at row"):
        OfflineLogs.from_tensordict(rows, tmp_path / "logs")
    assert not (tmp_path / "logs").exists()
    logs = OfflineLogs.from_tensordict(_sessions(), tmp_path / "good")
    assert torch.equal(logs[:][TRAJ_KEY], _sessions()[TRAJ_KEY])  # kept as given
