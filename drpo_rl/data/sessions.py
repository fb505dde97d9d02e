"""Checks that session logs hold whole, ordered trajectories, before anything uses them.

Session logs (``[env, time]`` as :class:`~drpo_rl.data.OfflineLogs` presents them, or flat
``[rows]`` in logged order) carry a trajectory id per step (:data:`TRAJ_KEY`), and
optionally the step's index in its session (:data:`STEP_KEY`). A sampler, a return-to-go or
a sequence model reads them as given, so :func:`check_sessions` refuses broken ones, naming
the trajectory and the row, instead of re-ordering or dropping anything:

- a trajectory id that restarts after other steps (two separate runs of one id);
- a ``("next", "done")`` in the middle of a trajectory (its steps go on after it);
- steps out of order (a step index that is not the previous one plus one);
- a session longer than the env's cap (``max_length``).
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from drpo_rl.data.layout import STEP_KEY, TRAJ_KEY

__all__ = ["check_sessions"]


def check_sessions(rows: TensorDictBase, *, max_length: int | None = None) -> None:
    """``ValueError`` naming the trajectory id and row of the first broken trajectory.

    The ``("next", "done")`` and step-index checks run where those entries are present.
    Rows are named as ``logs[...]`` indexes them: ``row [env, time]`` for ``[env, time]``
    logs, ``row i`` for flat ones.

    Example:
        >>> from tensordict import TensorDict
        >>> rows = TensorDict({
        ...     ("collector", "traj_ids"): torch.tensor([0, 0, 1, 1, 0]),
        ...     ("next", "done"): torch.tensor([False, True, False, True, True])}, [5])
        >>> check_sessions(rows[:4])
        >>> check_sessions(rows)
        Traceback (most recent call last):
        ...
        ValueError: session logs: trajectory 0 restarts at row 4 after other steps (it ran ...
    """
    ids = rows.get(TRAJ_KEY, None)
    if ids is None:
        raise ValueError(f"session logs: expected a trajectory id entry {TRAJ_KEY}, missing")
    flat = rows.batch_dims == 1
    shape = (1, rows.shape[0]) if flat else tuple(rows.shape[:2])
    ids = ids.reshape(shape)
    done = rows.get(("next", "done"), None)
    step = rows.get(STEP_KEY, None)

    def row(env: int, time: int) -> str:
        return f"row {time}" if flat else f"row [{env}, {time}]"

    same = ids[:, 1:] == ids[:, :-1]
    if done is not None:
        done = done.reshape(shape)
        _first(
            done[:, :-1] & same,
            lambda e, t: (
                f"trajectory {int(ids[e, t])} has ('next', 'done') at {row(e, t)} but "
                f"goes on at {row(e, t + 1)}: a session ends at its last step"
            ),
        )
    if step is not None:
        step = step.reshape(shape)
        _first(
            same & (step[:, 1:] != step[:, :-1] + 1),
            lambda e, t: (
                f"trajectory {int(ids[e, t])} has step {int(step[e, t + 1])} at "
                f"{row(e, t + 1)} after step {int(step[e, t])} (expected {int(step[e, t]) + 1}): "
                "steps out of order (rows are never re-ordered)"
            ),
        )
    # Runs of one id along each env's stream, in order.
    starts = torch.ones(shape, dtype=torch.bool)
    starts[:, 1:] = ~same
    env, time = starts.nonzero(as_tuple=True)
    run_ids = ids[env, time]
    order = torch.argsort(run_ids, stable=True)
    repeated = torch.nonzero(run_ids[order][1:] == run_ids[order][:-1])
    if len(repeated):
        first, again = order[repeated[0, 0]], order[repeated[0, 0] + 1]
        e, t = int(env[again]), int(time[again])
        raise ValueError(
            f"session logs: trajectory {int(run_ids[again])} restarts at {row(e, t)} after "
            f"other steps (it ran from {row(int(env[first]), int(time[first]))}); a "
            "trajectory id names one session"
        )
    if max_length is not None:
        ends = torch.ones(shape, dtype=torch.bool)
        ends[:, :-1] = ~same
        lengths = ends.nonzero()[:, 1] - time + 1
        too_long = torch.nonzero(lengths > max_length)
        if len(too_long):
            k = int(too_long[0, 0])
            raise ValueError(
                f"session logs: trajectory {int(run_ids[k])} has {int(lengths[k])} steps from "
                f"{row(int(env[k]), int(time[k]))}, more than the env's max_length "
                f"{max_length}"
            )


def _first(bad: torch.Tensor, message) -> None:
    found = bad.nonzero()
    if len(found):
        env, time = (int(i) for i in found[0])
        raise ValueError(f"session logs: {message(env, time)}")
