"""Reference policies for online evaluation, which read privileged truth: the greedy
oracle and, for sessions, a planner that trades immediate reward for staying power.

The oracle is the one-step upper bound every learned policy is compared with: it
recommends, for each user, the catalogue item of highest noiseless reward. The env finds that item
(``env.oracle()``, exact, in chunks of items) and, when built with
``privileged=("oracle",)`` (as :func:`~drpo_rl.evaluation.evaluate` builds its envs),
writes it as ``"oracle_item"``; the oracle policy plays it. It is a plain TorchRL module,
so it runs in collectors like any learned policy.

In a session the greedy choice can lose the session: an item the user likes now may bore
them into leaving (`UserSession`'s ``boredom``). :class:`PatiencePlanner` scores each item
by its noiseless reward minus ``penalty`` times the patience it costs, so it spreads its
items over clusters; ``penalty=0`` is the greedy oracle. It reads the users' hidden
fatigue from the env it is bound to, as the logging agents do.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from drpo_rl.evaluation.metrics import ORACLE_ITEM
from envs.common.checks import check_number

#: The planner's penalty in the myopia world (`drpo_rl.benchmark.presets.MYOPIA_WORLD`).
#: There the session return rises with it and flattens: 4.75 at 0 (the greedy oracle),
#: then 6.91, 7.41, 7.62, 7.72 and 7.79 at 0.5, 1, 2, 4 and 8 (2000 users, 95% half-width
#: 0.05).
PLANNER_PENALTY = 8.0


class OraclePolicy(TensorDictModuleBase):
    """Recommends each user's best item, the privileged ``"oracle_item"`` of the env.

    Args:
        embeddings: the catalogue embeddings ``[N, d]`` for an embedding action (the oracle
            plays the best item's own embedding, which decodes back to that item), or
            ``None`` for an item-id action.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"oracle_item": torch.tensor([1])}, batch_size=[1])
        >>> OraclePolicy()(td)["action"].tolist()
        [1]
        >>> OraclePolicy(torch.eye(3))(td)["action"].tolist()
        [[0.0, 1.0, 0.0]]
        >>> OraclePolicy()(TensorDict({}, batch_size=[1]))
        Traceback (most recent call last):
        ...
        ValueError: the oracle plays the env's privileged 'oracle_item', which these inputs ...
    """

    def __init__(self, embeddings: torch.Tensor | None = None) -> None:
        super().__init__()
        self.in_keys = [ORACLE_ITEM]
        self.out_keys = ["action"]
        if embeddings is None:
            self.embeddings = None
        else:
            self.register_buffer("embeddings", embeddings.detach().clone())

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        best = tensordict.get(ORACLE_ITEM, None)
        if best is None:
            raise ValueError(
                f"the oracle plays the env's privileged {ORACLE_ITEM!r}, which these inputs "
                'lack: build the env with privileged=("oracle",) (evaluate() does when given '
                "a name)"
            )
        action = best if self.embeddings is None else self.embeddings[best]
        tensordict.set("action", action)
        return tensordict


def oracle_policy(env: EnvBase) -> OraclePolicy:
    """The oracle for ``env``'s world, matching its action form (item id or embedding).

    Example:
        >>> from envs import make_env
        >>> env = make_env("RecSimBandit", num_envs=4, seed=0)
        >>> oracle_policy(env).embeddings.shape == env.catalogue.embeddings.shape
        True
    """
    if env.full_action_spec["action"].dtype.is_floating_point:
        catalogue = getattr(env, "catalogue", None)
        if catalogue is None:
            raise ValueError(
                "an embedding-action env needs env.catalogue.embeddings for the oracle action"
            )
        return OraclePolicy(catalogue.embeddings)
    return OraclePolicy()


class PatiencePlanner(TensorDictModuleBase):
    """Recommends the item of highest ``r - penalty * cost``, where ``r`` is its noiseless
    reward and ``cost = (1 - r) + boredom * f[c]`` the patience it costs (``f[c]`` the
    fatigue of its cluster): a one-step look-ahead on the user's staying, exact over the
    catalogue in chunks of items.

    Bound to a `UserSession`-like env (``env.reward_table``, ``env.latent_state``), which
    :func:`~drpo_rl.evaluation.evaluate` swaps for its own evaluation env (``bind``).

    Example:
        >>> import torch
        >>> from envs import make_env
        >>> env = make_env("UserSession", num_envs=3, seed=0)
        >>> _ = env.reset()
        >>> greedy = PatiencePlanner(env, penalty=0.0)(env.reset())["action"]
        >>> bool(torch.equal(greedy, env.oracle()["item"]))
        True
    """

    def __init__(self, env: EnvBase, penalty: float = PLANNER_PENALTY) -> None:
        super().__init__()
        check_number("penalty", penalty, minimum=0)
        if env.full_action_spec["action"].dtype.is_floating_point:
            raise ValueError("PatiencePlanner: expected an item-id action env, got embeddings")
        self.penalty = float(penalty)
        self.env = env
        self.in_keys = ["observation"]
        self.out_keys = ["action"]

    def bind(self, env: EnvBase) -> PatiencePlanner:
        """Plan for ``env``'s users from now on."""
        self.env = env
        return self

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        env = self.env
        state = env.latent_state()
        fatigue = state.get("fatigue", None)
        boredom = getattr(env.dynamics, "boredom", 0.0)
        best_score = best_item = None
        for items in env.item_chunks():
            reward = env.reward_table(items)
            cost = 1.0 - reward
            if fatigue is not None and boredom:
                cost = cost + boredom * fatigue.index_select(1, env.catalogue.cluster[items])
            score, item = (reward - self.penalty * cost).max(-1)
            item = item + items.start
            if best_score is None:
                best_score, best_item = score, item
            else:
                better = score > best_score
                best_score = torch.where(better, score, best_score)
                best_item = torch.where(better, item, best_item)
        tensordict.set("action", best_item)
        return tensordict
