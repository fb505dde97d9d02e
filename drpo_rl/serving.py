"""A trained policy as a recommender: top-k items in the log's own ids, batched, exportable.

:func:`load_policy` reads a run folder written by ``drpo-rl train`` (or
:func:`drpo_rl.offline_training.train_on_logs`): ``config.json`` (algorithm,
hyper-parameters, sizes, the observation layout, the raw item ids), ``policy.pt`` (the
weights, plain tensors) and, where the layout needs them, ``tables.pt`` (item embeddings,
user vectors). It rebuilds the policy from the registry and answers
:meth:`Recommender.recommend`:

- an item-id policy ranks the items by its logits (the top-k logits);
- a Gaussian (embedding) policy ranks them by the cosine of its mean action with each
  item's embedding, the rule the simulated users decode actions by, exactly and one chunk
  of items at a time (:func:`envs.chunks.topk`): the k nearest items to its action.

:meth:`Recommender.export` writes the observation -> top-k module with ``torch.export``;
``torch.export.load(path).module()`` gives the same top-k without this package's training
code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from envs import chunks

__all__ = ["CONFIG_FILE", "POLICY_FILE", "TABLES_FILE", "Recommender", "item_scores", "load_policy"]

CONFIG_FILE = "config.json"
POLICY_FILE = "policy.pt"
TABLES_FILE = "tables.pt"
# Items scored at once by the nearest-item search.
_CHUNK_ITEMS = 65_536


def _score_network(policy: Any) -> nn.Module:
    """The network of a registry policy that maps observations to logits or (loc, scale)."""
    first = policy.module[0] if hasattr(policy, "module") else None
    if (
        first is None
        or not hasattr(first, "out_keys")
        or first.out_keys[0]
        not in (
            "logits",
            "loc",
        )
    ):
        raise ValueError(
            f"policy: expected a registry actor whose first module writes 'logits' or 'loc', "
            f"got {type(policy).__name__}"
        )
    return first.module


class _TopK(nn.Module):
    """observation [B, obs_dim] -> (scores [B, k], item indices int64 [B, k])."""

    def __init__(self, network: nn.Module, item_embeddings: torch.Tensor | None, k: int):
        super().__init__()
        self.network = network
        self.k = k
        self.discrete = item_embeddings is None
        if item_embeddings is not None:
            unit = item_embeddings / item_embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            self.register_buffer("unit_items", unit)

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.network(observation)
        if self.discrete:
            # A plain tuple: torch.export cannot save torch.return_types.topk.
            values, indices = out.topk(min(self.k, out.shape[-1]), dim=-1)
            return values, indices
        loc = out[0]
        loc = loc / loc.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        items = self.unit_items
        return chunks.topk(lambda s: loc @ items[s].T, items.shape[0], self.k, _CHUNK_ITEMS)


def item_scores(policy: Any, observation: torch.Tensor, item_embeddings=None) -> torch.Tensor:
    """Every item's score [B, N] under ``policy``: its logits, or the cosine of its mean
    action with each item embedding (for validation metrics; serving uses top-k)."""
    out = _score_network(policy)(observation)
    if item_embeddings is None:
        return out
    loc = out[0] / out[0].norm(dim=-1, keepdim=True).clamp_min(1e-12)
    unit = item_embeddings / item_embeddings.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return loc @ unit.T


class Recommender:
    """A trained policy that recommends items by their raw ids.

    Attributes:
        policy: the registry policy (a TorchRL actor) with the trained weights.
        item_ids: raw item id of each item index; config: the run's ``config.json``.

    Example:
        Users who had tea go on to cake, users who had coffee to toast; a BC run on that
        log recommends accordingly, in the log's own ids:

        >>> import tempfile
        >>> import pandas as pd
        >>> from drpo_rl.data import load_interactions
        >>> from drpo_rl.offline_training import train_on_logs
        >>> folder = tempfile.mkdtemp()
        >>> log = pd.DataFrame({"user": [u for u in range(40) for _ in range(2)],
        ...                     "item": ["tea", "cake", "coffee", "toast"] * 20,
        ...                     "reward": [1.0] * 80, "time": range(80)})
        >>> logs = load_interactions(log, f"{folder}/logs", split=(1.0, 0.0, 0.0))
        >>> _ = train_on_logs(logs, f"{folder}/run", algorithm="bc", steps=200,
        ...                   progress=False, logger="none")
        >>> load_policy(f"{folder}/run").recommend([["tea"], ["coffee"]], k=1)
        [['cake'], ['toast']]
    """

    def __init__(self, policy: Any, config: dict, tables: dict[str, torch.Tensor]) -> None:
        self.policy = policy
        self.config = config
        self.item_ids = list(config["item_ids"])
        self._index = {_key(raw): i for i, raw in enumerate(self.item_ids)}
        self._users = {_key(raw): i for i, raw in enumerate(config.get("user_ids", []))}
        self.tables = tables
        self.layout = {part["name"]: part["columns"] for part in config["observation_layout"]}
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> Recommender:
        """Moves the policy and tables to ``device`` (CPU or GPU); returns self."""
        self.device = torch.device(device)
        self.policy.to(self.device)
        self.tables = {k: v.to(self.device) for k, v in self.tables.items()}
        return self

    def top_k_module(self, k: int) -> nn.Module:
        """The observation -> (scores, item indices) module of :meth:`recommend`."""
        # Item-id policies rank by logits even when the run has item embeddings (two-tower).
        nearest = self.config["action"] == "embedding"
        module = _TopK(
            _score_network(self.policy), self.tables.get("item_embeddings") if nearest else None, k
        )
        return module.to(self.device).eval()

    def observations(
        self,
        history: Sequence[Sequence[Any]],
        *,
        rewards: Sequence[Sequence[float]] | None = None,
        users: Sequence[Any] | None = None,
    ) -> torch.Tensor:
        """The policy's observations [B, obs_dim] of ``history`` (per user, raw item ids,
        oldest first), their rewards (default 1: liked) and ``users`` (raw ids) where the
        layout holds user features. Steps count the history."""
        k = self.config["history_length"]
        rows = []
        for row, items in enumerate(history):
            items = list(items)
            given = [1.0] * len(items) if rewards is None else list(rewards[row])
            if len(given) != len(items):
                raise ValueError(
                    f"rewards[{row}]: expected {len(items)} rewards (one per item of "
                    f"history[{row}]), got {len(given)}"
                )
            index = [self._item(raw, row) for raw in items][::-1][:k]
            rows.append(self._observe(index, given[::-1][:k], len(items), users, row))
        return torch.stack(rows).to(self.device)

    def recommend(
        self,
        history: Sequence[Sequence[Any]],
        k: int = 10,
        *,
        rewards: Sequence[Sequence[float]] | None = None,
        users: Sequence[Any] | None = None,
        batch_size: int = 4096,
    ) -> list[list[Any]]:
        """The top-``k`` raw item ids for each user's ``history`` (see :meth:`observations`),
        computed ``batch_size`` users at a time."""
        module = self.top_k_module(k)
        found = []
        with torch.no_grad():
            for start in range(0, len(history), batch_size):
                stop = start + batch_size
                observation = self.observations(
                    history[start:stop],
                    rewards=None if rewards is None else rewards[start:stop],
                    users=None if users is None else users[start:stop],
                )
                found.append(module(observation)[1].cpu())
        index = torch.cat(found) if found else torch.empty(0, k, dtype=torch.int64)
        return [[self.item_ids[i] for i in row] for row in index.tolist()]

    def export(self, path: str | os.PathLike, k: int = 10) -> Path:
        """Writes the observation -> (scores, item indices) top-``k`` module with
        :func:`torch.export.export` (a batch dimension of any size) to ``path`` (``.pt2``);
        load it with ``torch.export.load(path).module()``."""
        module = self.top_k_module(k)
        example = torch.zeros(2, self.config["obs_dim"], device=self.device)
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        path = Path(path)
        torch.export.save(program, path)
        return path

    def _item(self, raw: Any, row: int) -> int:
        index = self._index.get(_key(raw))
        if index is None:
            raise ValueError(f"history[{row}]: item {raw!r} is not an item of the logs")
        return index

    def _observe(self, index, given, steps, users, row) -> torch.Tensor:
        k, parts = self.config["history_length"], []
        pad = k - len(index)
        for name, (start, stop) in self.layout.items():
            if name == "history_item":
                scaled = [(i + 1) / self.config["num_items"] for i in index] + [0.0] * pad
                parts.append(torch.tensor(scaled))
            elif name in ("history_reward", "history_rewards"):
                parts.append(torch.tensor([float(r) for r in given] + [0.0] * pad))
            elif name == "history_items":
                table = self.tables["item_embeddings"].cpu()
                shown = table[torch.tensor(index, dtype=torch.int64)].reshape(-1)
                parts.append(torch.cat([shown, torch.zeros(pad * table.shape[1])]))
            elif name == "step":
                parts.append(
                    torch.tensor([min(steps, self.config["max_steps"]) / self.config["max_steps"]])
                )
            elif name in ("user_features", "preference"):
                parts.append(self._user(users, row))
            else:
                raise ValueError(f"{CONFIG_FILE}: unknown observation part {name!r}")
            if parts[-1].numel() != stop - start:
                raise ValueError(f"{CONFIG_FILE}: part {name!r} should be {stop - start} wide")
        return torch.cat(parts).to(torch.float32)

    def _user(self, users, row) -> torch.Tensor:
        if users is None:
            raise ValueError("users: the policy's observation holds user features; pass users=")
        index = self._users.get(_key(users[row]))
        if index is None:
            raise ValueError(f"users[{row}]: user {users[row]!r} is not a user of the logs")
        return self.tables["users"][index].cpu()


def _key(raw: Any) -> tuple[str, Any]:
    return type(raw).__name__, raw


def load_policy(run: str | os.PathLike, *, device: str | torch.device = "cpu") -> Recommender:
    """The trained policy of the run folder ``run`` as a :class:`Recommender` on ``device``.

    Raises:
        ValueError: ``run`` is not a finished run folder (names the missing file), or its
            weights do not fit its config.
    """
    from drpo_rl.checkpoints import load_policy as load_weights

    run = Path(run)
    for name in (CONFIG_FILE, POLICY_FILE):
        if not (run / name).is_file():
            raise ValueError(f"{run / name}: missing; {run} is not a finished drpo-rl train run")
    config = json.loads((run / CONFIG_FILE).read_text())
    tables = {}
    if (run / TABLES_FILE).is_file():
        tables = torch.load(run / TABLES_FILE, weights_only=True, map_location="cpu")
    policy = load_weights(
        config["algorithm"], policy_specs(config, tables), run / POLICY_FILE, config["hparams"]
    )
    policy.eval()
    return Recommender(policy, config, tables).to(device)


def policy_specs(config: dict, tables: dict[str, torch.Tensor]):
    """The :class:`~drpo_rl.models.PolicySpecs` a run's config records."""
    from drpo_rl.models import PolicySpecs

    embeddings = tables.get("item_embeddings")
    if config["action"] == "item":
        return PolicySpecs(
            obs_dim=config["obs_dim"], num_items=config["num_items"], item_embeddings=embeddings
        )
    return PolicySpecs(
        obs_dim=config["obs_dim"], action_dim=config["action_dim"], item_embeddings=embeddings
    )
