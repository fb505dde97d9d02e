"""Multi-step sessions: drifting interests, cluster fatigue and a leave model."""

from __future__ import annotations

from envs.config import UserSessionConfig
from envs.simulator import SimulatedUsersEnv


class UserSession(SimulatedUsersEnv):
    """
    ## Description

    Multi-step recommendation sessions on the `RecSimBandit` catalogue and users. At each
    step the agent shows one item; the user's reward follows the same rule as the bandit,
    and then the user changes:

    - interest drift: u <- normalise((1 - a r) u + a r e/|e|), with a = `drift_rate` and
      r the observed reward (a liked item pulls the preference toward it);
    - fatigue: f[c] <- `fatigue_decay` f[c] + 1 for the shown item's cluster c; every item's
      latent reward is multiplied by exp(-`fatigue_strength` f[its cluster]), so repeating
      one cluster wears it out;
    - patience: starts at `patience` and drops by (1 - r) + `boredom` f[c] each step (f[c]
      the fatigue of the shown item's cluster before it is shown: repeating a cluster
      bores the user even while its items still please).

    With `max_length=1` and `drift_rate=0` it is `RecSimBandit` (same users and rewards
    under the same seed; the observation then has extra history/step columns, all zero at
    reset), except that its one step is truncated (the length cap), not terminated.

    ## Action Space

    By default the item id, int64 `(num_envs,)` in `[0, num_items)` (spec `Categorical`);
    with `action_type="embedding"`, a float32 `(num_envs, d)` embedding decoded to the item
    of highest cosine similarity. Bad actions raise `ValueError` saying what was expected.

    ## Observation Space

    "observation" is float32 `(num_envs, d + K d + K + 1)` with K = `history_length`:

    | Num              | Observation                                        | Min  | Max |
    |------------------|----------------------------------------------------|------|-----|
    | 0 .. d-1         | u + offset, offset ~ N(0, observation_noise^2 I)   | -Inf | Inf |
    |                  | drawn at reset                                     |      |     |
    | d .. d+Kd-1      | embeddings of the K most recent items, most recent | -Inf | Inf |
    |                  | first (zeros for empty slots)                      |      |     |
    | d+Kd .. d+Kd+K-1 | their observed rewards (0 for empty slots)         | 0    | 1   |
    | d+Kd+K           | step / max_length                                  | 0    | 1   |

    "item" and the privileged queries and keys as in `RecSimBandit` (`env.oracle()` is
    the best item for the current preference and fatigue: the greedy one-step choice).

    ## Rewards

    clip(exp(-(1 - cos(e, u)) / (2 delta^2)) exp(-fatigue_strength f[c(e)]) +
    N(0, reward_noise^2), 0, 1) for the shown item e, float32 `(num_envs, 1)`.

    ## Starting State

    A fresh user (as in `RecSimBandit`), zero fatigue, full patience, empty history,
    step 0. Partial resets (`"_reset"` mask) renew only the masked users.

    ## Episode End

    Termination when the user leaves (patience <= 0); truncation when `max_length` items
    were shown and the user is still there (the cap limits the session, it is not the
    user's decision, so the value of the state after it is not zero). "done" is either.

    ## Arguments

    `UserSession(config=None, *, num_envs=1, device="cpu", seed=None)` or
    `envs.make_env("UserSession", ...)`; all `RecSimBandit` fields (see there), plus:

    | Parameter          | Type  | Default | Description                                       |
    |--------------------|-------|---------|---------------------------------------------------|
    | `action_type`      | str   | "item"  | "item" or "embedding"                             |
    | `max_length`       | int   | 20      | most items in a session                           |
    | `drift_rate`       | float | 0.1     | pull of a consumed item on the preference, [0, 1] |
    | `fatigue_strength` | float | 0.3     | reward damping per unit of cluster fatigue        |
    | `fatigue_decay`    | float | 0.8     | per-step decay of fatigue, [0, 1)                 |
    | `patience`         | float | 5.0     | starting patience (math.inf: never leaves early)  |
    | `history_length`   | int   | 5       | K, recent items in the observation                |
    | `boredom`          | float | 0.0     | patience lost per unit of cluster fatigue         |

    With `boredom` > 0 the greedy one-step oracle (`env.oracle()`) can lose the session to
    a policy that spreads its items over clusters: docs/method.md, "Sessions", describes
    such a world, the session benchmark's (`drpo-rl bench --env UserSession`).

    ```python
    >>> import torch
    >>> from envs import make_env
    >>> env = make_env("UserSession", num_envs=2, seed=0, max_length=3)
    >>> td = env.reset()
    >>> td["observation"].shape
    torch.Size([2, 102])
    >>> td["action"] = torch.tensor([5, 5])
    >>> out = env.step(td)["next"]
    >>> out["observation"][:, -1].tolist()  # step / max_length
    [0.3333333432674408, 0.3333333432674408]
    >>> rollout = env.rollout(10)  # stops when a session ends
    >>> rollout.shape[1] <= 3
    True
    >>> capped = make_env("UserSession", seed=0, max_length=2, patience=float("inf"))
    >>> last = capped.rollout(5)[0, -1]["next"]  # user 0, last step
    >>> bool(last["done"]), bool(last["truncated"]), bool(last["terminated"])
    (True, True, False)

    ```

    ## Vectorized environment

    Batched over `num_envs` users on `device`; Gymnasium id `drpo_rl/UserSession-v0`
    registers a `vector_entry_point` on this core.

    ## Version History

    * v0: initial version; with `boredom`, reaching `max_length` became a truncation.
    """

    config_class = UserSessionConfig
