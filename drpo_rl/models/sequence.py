"""SASRec-style policies: causal self-attention over the session history in the observation.

A ``UserSession`` observation carries its own history (see ``envs/user_session.py``): the
user state ``u`` (``d`` columns), the embeddings of the ``K`` most recent items, most recent
first (``K d`` columns, zeros for empty slots), their observed rewards (``K``) and the step
fraction (1). :class:`SessionEncoder` reads that row as a sequence of ``K + 1`` tokens in
time order,

    [item_{t-K}, ..., item_{t-1}, now]     item_j = W_item [e_j, r_j] + p_j
                                           now    = W_now  [u, step] + p_K

runs a causal ``torch.nn.TransformerEncoder`` over it and returns the state at the last
position (``now``), which has seen the whole window. Empty slots (a session's first ``K``
steps) are the oldest positions; they are masked out as keys, so no real token ever attends
to them and their content cannot change the output (padding invariance).

Because the history travels in the observation, the policy is a function of one row like
the MLP policy: it reads ``"observation"``, is trained by the same losses on rows of any
sampler (``SliceSampler`` slices of sessions included), and runs in any TorchRL collector or
:func:`drpo_rl.evaluation.evaluate` with no side channel. Longer context is the env's own
``history_length`` (``K``), which the logs then carry too.

:func:`make_sequence_actor` puts the encoder in front of the head of the MLP actor of the
same action kind (:func:`~drpo_rl.models.make_categorical_actor`,
:func:`~drpo_rl.models.make_gaussian_actor`), so keys, distributions and
:func:`~drpo_rl.models.categorical_bc_module` are unchanged. For item ids the two-tower head
scores the catalogue by a dot product with the item embeddings: one ``[batch, num_items]``
logits block at the last position only, what any categorical head over the catalogue needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from tensordict.nn import InteractionType
from tensordict.nn.probabilistic import interaction_type
from torch import nn
from torchrl.modules import ProbabilisticActor

from drpo_rl.models.actors import make_actor
from drpo_rl.models.specs import PolicySpecs
from envs.common.checks import check_int, check_number

__all__ = ["SessionEncoder", "SessionLayout", "make_sequence_actor"]


@dataclass(frozen=True)
class SessionLayout:
    """The columns of a ``UserSession`` observation: ``d + K d + K + 1`` for embedding
    size ``d`` and history length ``K``.

    Examples:
        >>> layout = SessionLayout(embedding_dim=16, history_length=5)
        >>> layout.obs_dim
        102
        >>> SessionLayout.of(PolicySpecs(obs_dim=102, action_dim=16)).history_length
        5
        >>> SessionLayout.of(PolicySpecs(obs_dim=20, action_dim=16))
        Traceback (most recent call last):
        ...
        ValueError: observation: expected d + K d + K + 1 = 17 (K + 1) columns of a ... got 20
    """

    embedding_dim: int
    history_length: int

    def __post_init__(self) -> None:
        check_int("embedding_dim", self.embedding_dim)
        check_int("history_length", self.history_length)

    @property
    def obs_dim(self) -> int:
        return (self.embedding_dim + 1) * (self.history_length + 1)

    @classmethod
    def of(cls, specs: PolicySpecs) -> SessionLayout:
        """The layout of ``specs``' observation; ``d`` is the embedding action's size or the
        width of the catalogue embeddings (item-id action)."""
        if specs.discrete:
            if specs.item_embeddings is None:
                raise ValueError(
                    "item_embeddings: expected the catalogue embeddings [num_items, d] (the "
                    "history is read as item embeddings), got None"
                )
            d = int(specs.item_embeddings.shape[1])
        else:
            d = int(specs.action_dim)
        k, rest = divmod(specs.obs_dim, d + 1)
        if rest or k < 2:
            raise ValueError(
                f"observation: expected d + K d + K + 1 = {d + 1} (K + 1) columns of a "
                f"UserSession observation (d = {d}, K >= 1), got {specs.obs_dim}"
            )
        return cls(embedding_dim=d, history_length=k - 1)


class SessionEncoder(nn.Module):
    """Causal transformer over the history of a session observation -> ``[*B, model_dim]``.

    Args:
        layout (SessionLayout): how to cut the observation.

    Keyword Args:
        model_dim (int): token width (SASRec: 50 to 64).
        layers (int): ``TransformerEncoderLayer`` blocks.
        heads (int): attention heads; must divide ``model_dim``.
        dropout (float): dropout of the blocks, active in ``train()`` mode and not under
            ``ExplorationType.DETERMINISTIC`` (evaluation's mode: its actions reproduce).

    :meth:`tokens` cuts an observation into tokens ``[*B, K + 1, model_dim]`` and an
    empty-slot mask ``[*B, K + 1]``; :meth:`sequence` encodes tokens at every position;
    ``forward`` returns the last position of ``sequence(*tokens(observation))``.

    Examples:
        >>> encoder = SessionEncoder(SessionLayout(4, 3), model_dim=8, heads=2)
        >>> obs = torch.zeros(2, 20)  # session start: the 3 history slots are empty
        >>> encoder.tokens(obs)[1].tolist()[0]
        [True, True, True, False]
        >>> encoder(obs).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        layout: SessionLayout,
        *,
        model_dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_int("model_dim", model_dim)
        check_int("layers", layers)
        check_int("heads", heads)
        check_number("dropout", dropout, minimum=0, maximum=1)
        if model_dim % heads:
            raise ValueError(f"heads: expected a divisor of model_dim={model_dim}, got {heads}")
        self.layout = layout
        self.heads = heads
        self.dropout = float(dropout)
        d = layout.embedding_dim
        self.item_tokens = nn.Linear(d + 1, model_dim)
        self.now_token = nn.Linear(d + 1, model_dim)
        self.positions = nn.Embedding(layout.history_length + 1, model_dim)
        block = nn.TransformerEncoderLayer(
            model_dim,
            heads,
            dim_feedforward=4 * model_dim,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(
            block, layers, norm=nn.LayerNorm(model_dim), enable_nested_tensor=False
        )

    def tokens(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, empty)``: the window oldest first then ``now``, and which slots are
        empty (all-zero item embedding, as ``UserSession`` fills slots not yet seen)."""
        d, k = self.layout.embedding_dim, self.layout.history_length
        if observation.shape[-1] != self.layout.obs_dim:
            raise ValueError(
                f"observation: expected {self.layout.obs_dim} columns (d={d}, K={k}), got "
                f"shape {tuple(observation.shape)}"
            )
        user, items, rewards, step = observation.split([d, k * d, k, 1], dim=-1)
        # Most recent first in the observation; time order (oldest first) here.
        items = items.unflatten(-1, (k, d)).flip(-2)
        rewards = rewards.flip(-1).unsqueeze(-1)
        history = self.item_tokens(torch.cat([items, rewards], dim=-1))
        now = self.now_token(torch.cat([user, step], dim=-1)).unsqueeze(-2)
        tokens = torch.cat([history, now], dim=-2) + self.positions.weight
        empty = torch.cat([(items == 0).all(-1), torch.zeros_like(step, dtype=torch.bool)], -1)
        return tokens, empty

    def sequence(self, tokens: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
        """Encode ``tokens`` ``[*B, L, model_dim]`` causally: position ``t`` attends to the
        non-empty positions ``<= t`` (and an empty position to itself only, which keeps its
        output finite and reaches no other position)."""
        batch, length = tokens.shape[:-2], tokens.shape[-2]
        flat, empty = tokens.reshape(-1, length, tokens.shape[-1]), empty.reshape(-1, length)
        eye = torch.eye(length, dtype=torch.bool, device=tokens.device)
        later = torch.ones_like(eye).triu(1)
        blocked = later | (empty.unsqueeze(-2) & ~eye)  # [N, L (query), L (key)]
        mask = blocked.repeat_interleave(self.heads, dim=0)
        return self.blocks(flat, mask=mask).reshape(*batch, length, -1)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        tokens, empty = self.tokens(observation)
        if self.dropout and self.training and interaction_type() == InteractionType.DETERMINISTIC:
            # The deterministic action (evaluate(), collectors) is the policy's mode: no
            # dropout, even in train() mode, so that evaluations and checkpoints reproduce.
            self.blocks.eval()
            try:
                return self.sequence(tokens, empty)[..., -1, :]
            finally:
                self.blocks.train()
        return self.sequence(tokens, empty)[..., -1, :]


def make_sequence_actor(
    env_or_specs,
    *,
    model_dim: int = 64,
    layers: int = 2,
    heads: int = 2,
    dropout: float = 0.0,
    form: Literal["per_item", "two_tower"] | None = None,
    **head_kwargs,
) -> ProbabilisticActor:
    """The actor of the action kind of ``env_or_specs`` with a :class:`SessionEncoder`
    in front of its head: categorical over item ids (head ``form``, by default
    ``"two_tower"``: the dot product with the catalogue embeddings) or Gaussian over the
    item embedding (``form`` must then be left unset).

    Keys and distributions are those of :func:`~drpo_rl.models.make_actor`: it reads
    ``"observation"`` and writes ``"logits"`` or ``"loc"``/``"scale"``, then ``"action"``.
    ``head_kwargs`` (``num_cells``, ``depth``, ``log_std_init``, ``learn_item_embeddings``,
    ``return_log_prob``...) go to that factory; the head's MLP reads the encoder's
    ``model_dim`` state instead of the observation.

    Examples:
        >>> from tensordict import TensorDict
        >>> specs = PolicySpecs(obs_dim=102, num_items=30, item_embeddings=torch.randn(30, 16))
        >>> actor = make_sequence_actor(specs, model_dim=16, layers=1)
        >>> td = actor(TensorDict(observation=torch.randn(4, 102), batch_size=[4]))
        >>> td["logits"].shape, td["action"].dtype
        (torch.Size([4, 30]), torch.int64)
        >>> gaussian = make_sequence_actor(PolicySpecs(obs_dim=102, action_dim=16))
        >>> gaussian(td.exclude("action"))["loc"].shape
        torch.Size([4, 16])
    """
    specs = PolicySpecs.of(env_or_specs)
    encoder = SessionEncoder(
        SessionLayout.of(specs), model_dim=model_dim, layers=layers, heads=heads, dropout=dropout
    )
    head_specs = PolicySpecs(
        obs_dim=model_dim,
        action_dim=specs.action_dim,
        num_items=specs.num_items,
        item_embeddings=specs.item_embeddings,
    )
    if specs.discrete:
        head_kwargs["form"] = "two_tower" if form is None else form
    elif form is not None:
        raise ValueError(
            f"form: applies to item-id actions only; got {form!r} for an embedding action of "
            f"dim {specs.action_dim}"
        )
    actor = make_actor(head_specs, **head_kwargs)
    head = actor.module[0]
    head.module = nn.Sequential(encoder, head.module)
    return actor
