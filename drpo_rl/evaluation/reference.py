"""Reference policies for online evaluation: the oracle, which reads the privileged rewards.

The oracle is the upper bound every learned policy is compared with: it recommends, for
each user, the catalogue item of highest noiseless reward (``"item_rewards"``, privileged
information that no learner sees). It is a plain TorchRL module, so it runs in collectors
like any learned policy.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase

from drpo_rl.evaluation.metrics import ITEM_REWARDS


class OraclePolicy(TensorDictModuleBase):
    """Recommends each user's best item according to the privileged ``"item_rewards"``.

    Args:
        embeddings: the catalogue embeddings ``[N, d]`` for an embedding action (the oracle
            plays the best item's own embedding, which decodes back to that item), or
            ``None`` for an item-id action.

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> td = TensorDict({"item_rewards": torch.tensor([[0.1, 0.8, 0.3]])}, batch_size=[1])
        >>> OraclePolicy()(td)["action"].tolist()
        [1]
        >>> OraclePolicy(torch.eye(3))(td)["action"].tolist()
        [[0.0, 1.0, 0.0]]
    """

    def __init__(self, embeddings: torch.Tensor | None = None) -> None:
        super().__init__()
        self.in_keys = [ITEM_REWARDS]
        self.out_keys = ["action"]
        if embeddings is None:
            self.embeddings = None
        else:
            self.register_buffer("embeddings", embeddings.detach().clone())

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        best = tensordict.get(ITEM_REWARDS).argmax(-1)
        action = best if self.embeddings is None else self.embeddings[best]
        tensordict.set("action", action)
        return tensordict


def oracle_policy(env: EnvBase) -> OraclePolicy:
    """The oracle for ``env``, matching its action form (item id or embedding).

    Example:
        >>> from envs import make_env
        >>> env = make_env("RecSimBandit", num_envs=4, seed=0)
        >>> oracle_policy(env).embeddings.shape == env.catalogue.embeddings.shape
        True
    """
    if ITEM_REWARDS not in env.full_observation_spec.keys():
        raise ValueError(
            f"the oracle needs the privileged key {ITEM_REWARDS!r}, which this env does not "
            f"provide (observation keys: {list(env.full_observation_spec.keys())})"
        )
    if env.full_action_spec["action"].dtype.is_floating_point:
        catalogue = getattr(env, "catalogue", None)
        if catalogue is None:
            raise ValueError(
                "an embedding-action env needs env.catalogue.embeddings for the oracle action"
            )
        return OraclePolicy(catalogue.embeddings)
    return OraclePolicy()
