"""Parsed real logs, and their storage as :class:`~drpo_rl.data.OfflineLogs` folders."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict
from torchrl.data import ReplayBuffer

from drpo_rl.data.dataset import OfflineLogs
from drpo_rl.data.layout import check_tensordict, settings_differences
from drpo_rl.data.staging import StagedDataset

__all__ = [
    "ITEM_FEATURES_FILE",
    "TABLE_FILES",
    "ParsedLogs",
    "existing_logs",
    "open_or_write",
    "read_tables",
    "write_parsed",
]

#: Per-item and per-user tables a dataset folder may hold beside its storage (float32
#: ``[num_items, F]`` / ``[num_users, F]`` in dense-id order, plain tensors): item features
#: or embeddings, user features or vectors, for the models and for serving.
TABLE_FILES = {"item_embeddings": "item_features.pt", "users": "user_features.pt"}
ITEM_FEATURES_FILE = TABLE_FILES["item_embeddings"]


@dataclass(frozen=True)
class ParsedLogs:
    """Real logs read into the suite's TensorDict format, before anything is written.

    Attributes:
        data: the logs, batch ``[rows]``.
        metadata: JSON-friendly description: ``"source"`` (files read, with SHA-256 and
            rows), ``"options"`` (the loader's arguments), ``"keys"`` (what each key holds),
            ``"observation_layout"``, id mappings (``"item_ids"``: index -> id in the file,
            ...), ``"rows_removed"`` (rows each filter removed; empty when none ran).

    Example:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> data = TensorDict({"action": torch.tensor([3, 1])}, batch_size=[2])
        >>> len(ParsedLogs(data, {})), ParsedLogs(data, {}).rows_removed  # no filter ran
        (2, {})
    """

    data: TensorDict
    metadata: dict[str, Any]
    tables: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def rows_removed(self) -> dict[str, int]:
        """Rows removed by each row filter that was asked for."""
        return dict(self.metadata.get("rows_removed", {}))

    def __len__(self) -> int:
        return self.data.batch_size[0]


def existing_logs(
    out: str | os.PathLike, request: Mapping[str, Any], **buffer_kwargs: Any
) -> OfflineLogs | None:
    """The complete dataset at ``out`` if it was written for ``request``; None when there is
    none. One written for another request raises a ``ValueError`` naming each difference.

    ``request`` identifies what is loaded (loader, the sources' content, options); it is
    stored in the metadata as ``"request"``.
    """
    if not OfflineLogs.is_complete(out):
        return None
    # As it reads back from metadata.json (tuples become lists).
    request = json.loads(json.dumps(dict(request)))
    logs = OfflineLogs(out, **buffer_kwargs)
    stored = logs.metadata.get("request")
    if stored != request:
        raise ValueError(
            f"{out} holds logs loaded with other settings; "
            + "; ".join(settings_differences(stored or {}, request))
            + " (choose another out= or delete the folder)"
        )
    return logs


def open_or_write(
    out: str | os.PathLike,
    request: Mapping[str, Any],
    parse: Callable[[], ParsedLogs],
    **buffer_kwargs: Any,
) -> OfflineLogs:
    """The dataset at ``out``: opened if it was written for the same ``request`` (see
    :func:`existing_logs`), else written from ``parse()``."""
    logs = existing_logs(out, request, **buffer_kwargs)
    if logs is not None:
        return logs
    parsed = parse()
    request = json.loads(json.dumps(dict(request)))
    write_parsed(parsed, Path(out), {**parsed.metadata, "request": request})
    return OfflineLogs(out, **buffer_kwargs)


def write_parsed(parsed: ParsedLogs, out: Path, metadata: Mapping[str, Any]) -> None:
    """Writes ``parsed`` (rows and tables) as one dataset folder, atomically."""
    check_tensordict(parsed.data)
    with StagedDataset(out) as staged:
        storage = staged.make_storage(parsed.data.batch_size.numel())
        ReplayBuffer(storage=storage).extend(parsed.data)
        write_tables(staged.dir, parsed.tables)
        staged.commit(storage, metadata)


def write_tables(folder: Path, tables: Mapping[str, torch.Tensor]) -> None:
    """Saves ``tables`` (names of :data:`TABLE_FILES`) in a dataset folder being staged."""
    for name, table in tables.items():
        torch.save(
            torch.as_tensor(table, dtype=torch.float32).contiguous(), folder / TABLE_FILES[name]
        )


def read_tables(root: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tables of the dataset folder ``root``, by name (absent ones left out)."""
    found = {}
    for name, file in TABLE_FILES.items():
        if (Path(root) / file).is_file():
            found[name] = torch.load(Path(root) / file, weights_only=True).to(torch.float32)
    return found
