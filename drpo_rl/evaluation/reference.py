"""Reference policies for online evaluation: the oracle, which reads privileged truth.

The oracle is the upper bound every learned policy is compared with: it recommends, for
each user, the catalogue item of highest noiseless reward. The env finds that item
(``env.oracle()``, exact, in chunks of items) and, when built with
``privileged=("oracle",)`` (as :func:`~drpo_rl.evaluation.evaluate` builds its envs),
writes it as ``"oracle_item"``; the oracle policy plays it. It is a plain TorchRL module,
so it runs in collectors like any learned policy.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from drpo_rl.evaluation.metrics import ORACLE_ITEM


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
