"""Make horizon-1 offline logs readable by TorchRL's bootstrapping losses.

Bandit logs hold ``observation``, ``action``, ``("next", "reward")`` and ``("next", "done")``.
TorchRL's TD-based losses (IQL, CQL, the TD(0) advantage of BPPO) also read
``("next", "observation")`` and ``("next", "terminated")``. In a terminal transition the
next state's value is multiplied by ``1 - terminated = 0``, so any finite next observation
gives the same result; this module fills the missing entries for such logs and refuses
logs where a missing next observation would matter.
"""

from __future__ import annotations

from tensordict import TensorDictBase

__all__ = ["complete_terminal_transitions"]


def complete_terminal_transitions(batch: TensorDictBase) -> TensorDictBase:
    """A shallow copy of ``batch`` with ``("next", "terminated")`` and, for all-terminal
    batches, ``("next", "observation")`` filled in. The input is not modified, and losses
    that write diagnostics into their input (TorchRL's CQL and IQL do) write into the copy.

    ``("next", "terminated")`` defaults to ``("next", "done")`` (bandit logs never
    truncate). A missing ``("next", "observation")`` is filled with ``"observation"`` only
    when every transition is terminal, else ``ValueError``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> logs = TensorDict({
        ...     "observation": torch.zeros(2, 3),
        ...     ("next", "reward"): torch.ones(2, 1),
        ...     ("next", "done"): torch.ones(2, 1, dtype=torch.bool)}, [2])
        >>> full = complete_terminal_transitions(logs)
        >>> full["next", "terminated"].all(), full["next", "observation"].shape
        (tensor(True), torch.Size([2, 3]))
        >>> ("next", "terminated") in logs.keys(True)
        False
    """
    keys = batch.keys(True)
    missing_obs = ("next", "observation") not in keys
    missing_term = ("next", "terminated") not in keys
    out = batch.copy()
    if not (missing_obs or missing_term):
        return out
    done = batch.get(("next", "done"), default=None)
    if done is None:
        raise ValueError("offline logs need a ('next', 'done') entry (bool, [B, 1])")
    out["next"] = batch["next"].copy()
    terminated = done if missing_term else batch["next", "terminated"]
    if missing_term:
        out["next", "terminated"] = done
    if missing_obs:
        if not bool(terminated.all()):
            raise ValueError(
                "the logs have no ('next', 'observation') and some transitions are not "
                "terminal: a bootstrapping loss needs the next observation of multi-step logs"
            )
        out["next", "observation"] = batch["observation"]
    return out
