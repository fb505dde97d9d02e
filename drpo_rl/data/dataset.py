"""The offline-logs dataset: a read-only TorchRL replay buffer over a memory-mapped folder.

On disk a dataset is one folder (:mod:`drpo_rl.data.layout` checks it on open,
:mod:`drpo_rl.data.staging` writes it atomically)::

    <path>/
        storage/          the TensorDict, memory-mapped by ``LazyMemmapStorage``
                          (tensordict's ``meta.json`` + one ``.memmap`` file per key, and
                          TorchRL's ``storage_metadata.json``)
        metadata.json     what produced the data (env config, scenario, seed, versions, ...)
                          plus the storage layout
        COMPLETE          written last: only a folder holding it is a dataset
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import (
    ImmutableDatasetWriter,
    LazyMemmapStorage,
    RandomSampler,
    ReplayBuffer,
)
from torchrl.data.datasets.common import BaseDatasetExperienceReplay
from torchrl.data.replay_buffers import Sampler, Writer
from torchrl.envs import Compose, Reward2GoTransform

from drpo_rl.data.layout import (
    COMPLETE_MARKER,
    FORMAT_VERSION,
    METADATA_FILE,
    STORAGE_DIR,
    TRAJ_KEY,
    check_metadata_layout,
    check_recorded_bytes,
    check_recorded_layout,
    check_storage_folder,
    check_tensordict,
    memmap_file,
    read_metadata,
    refuse_non_finite,
)
from drpo_rl.data.sessions import check_sessions
from drpo_rl.data.staging import StagedDataset

__all__ = ["FORMAT_VERSION", "OfflineLogs", "check_read_transform"]


class OfflineLogs(BaseDatasetExperienceReplay):
    """Logged interactions, replayed the way TorchRL replays its offline datasets.

    A :class:`~torchrl.data.TensorDictReplayBuffer` whose storage is a
    :class:`~torchrl.data.LazyMemmapStorage` opened at ``path/storage`` (no copy: the
    tensors are memory-mapped from the folder), with an
    :class:`~torchrl.data.ImmutableDatasetWriter` by default, any sampler, transforms and a
    batch size, like :class:`torchrl.data.datasets.MinariExperienceReplay`.

    Storage layout: a TensorDict with one batch dimension (one row per interaction, e.g.
    bandit logs), or two: data collected as ``[env, time]`` (a collector's layout) is stored
    time-major, ``[time, env]``, as TorchRL's ``LazyMemmapStorage(ndim=2)`` does, so that
    each env's steps are contiguous and :class:`~torchrl.data.SliceSampler` can cut session
    slices; indexing (``logs[:]``) presents it as ``[env, time]`` again, and sampling gives
    flat batches. ``len(logs)`` counts every stored interaction.

    Write a dataset with :meth:`from_tensordict` (or :func:`drpo_rl.data.generate_logs`),
    re-open it with ``OfflineLogs(path)`` or :meth:`load`.

    Args:
        path (str or Path): the dataset folder.

    Keyword Args:
        batch_size (int, optional): default size of :meth:`sample` batches.
        sampler (Sampler, optional): defaults to :class:`~torchrl.data.RandomSampler`; use a
            :class:`~torchrl.data.SliceSampler` (e.g. ``traj_key=("collector", "traj_ids")``)
            for session trajectories.
        writer (Writer, optional): defaults to :class:`~torchrl.data.ImmutableDatasetWriter`
            (the data on disk is never modified through the dataset).
        transform (Transform, optional): applied to sampled batches. A transform that
            acts only when data is written (TorchRL's ``Reward2GoTransform``: the dataset is
            read-only) is refused, see :func:`check_read_transform`.
        collate_fn, pin_memory, prefetch: as in :class:`~torchrl.data.ReplayBuffer`.

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no complete dataset (for instance a
            folder left by an interrupted write).
        ValueError: ``metadata.json`` is not JSON, has another format version or does not
            match the stored tensors; or the storage folder holds a file that a TensorDict
            of plain tensors does not write (e.g. a pickle), or a tensor file whose size
            differs from its shape (the error names the file); or a floating-point tensor
            holds a NaN or an infinity (a :class:`~envs.ratings.TableError` naming its
            ``.memmap`` file, the key, the first such row and the value).

    Examples:
        >>> import tempfile, torch
        >>> from tensordict import TensorDict
        >>> from drpo_rl.data import OfflineLogs
        >>> td = TensorDict(
        ...     {"observation": torch.randn(100, 4), "action": torch.randint(10, (100,)),
        ...      ("next", "reward"): torch.rand(100, 1)},
        ...     batch_size=[100],
        ... )
        >>> root = tempfile.mkdtemp()
        >>> logs = OfflineLogs.from_tensordict(td, f"{root}/logs", {"source": "doc"}, batch_size=32)
        >>> logs.sample().shape
        torch.Size([32])
        >>> OfflineLogs.load(f"{root}/logs").metadata["source"]
        'doc'
        >>> len(OfflineLogs(f"{root}/logs"))
        100
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        batch_size: int | None = None,
        sampler: Sampler | None = None,
        writer: Writer | None = None,
        transform: Any | None = None,
        collate_fn: Callable | None = None,
        pin_memory: bool = False,
        prefetch: int | None = None,
    ) -> None:
        check_read_transform(transform)
        self.root = Path(path)
        self._metadata = read_metadata(self.root)
        layout = check_metadata_layout(self.root, self._metadata)
        # tensordict would unpickle non-tensor entries and zero-extend short tensor files.
        check_storage_folder(self.root / STORAGE_DIR)
        # ... and TorchRL would open fewer rows, or other shapes of the same bytes, quietly.
        check_recorded_layout(self.root / STORAGE_DIR, layout, self.root / METADATA_FILE)
        storage = LazyMemmapStorage(
            layout["num_rows"],
            scratch_dir=self.root / STORAGE_DIR,
            ndim=layout["ndim"],
            auto_cleanup=False,
        )
        # Same folder as scratch_dir: TorchRL memory-maps the files in place (no copy).
        storage.loads(self.root / STORAGE_DIR)
        stored_shape = list(storage._storage.shape)
        if stored_shape != layout["shape"]:
            raise ValueError(
                f"{self.root / METADATA_FILE}: storage.shape is {layout['shape']} but the "
                f"tensors in {self.root / STORAGE_DIR} have shape {stored_shape}"
            )
        # Once per open, not per sample: a NaN reward would otherwise surface as a NaN loss
        # far from its cause.
        refuse_non_finite(
            storage._storage,
            lambda key: memmap_file(self.root / STORAGE_DIR, key),
            "a dataset holds no NaN or infinity",
        )
        # After the NaN check, whose message is the more precise for that edit.
        check_recorded_bytes(self.root / STORAGE_DIR, layout, self.root / METADATA_FILE)
        super().__init__(
            storage=storage,
            sampler=RandomSampler() if sampler is None else sampler,
            writer=ImmutableDatasetWriter() if writer is None else writer,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            prefetch=prefetch,
            batch_size=batch_size,
            transform=transform,
        )

    def __getitem__(self, index: Any) -> Any:
        """``logs[index]``: the rows at ``index``, as a copy.

        Basic indexing of the memory-mapped storage (``logs[:]``, ``logs[0:5]``,
        ``logs[3]``) would give views of the files: an in-place edit of the result
        (``rows["observation"] += 1``) would change the dataset on disk, quietly. The copy
        keeps the dataset read-only; sampled batches are copies already.
        """
        rows = super().__getitem__(index)
        if isinstance(rows, TensorDictBase):
            return rows.apply(_plain_copy)
        return _plain_copy(rows) if isinstance(rows, torch.Tensor) else rows

    @classmethod
    def load(cls, path: str | os.PathLike, **buffer_kwargs: Any) -> OfflineLogs:
        """Re-opens the dataset at ``path`` (same as ``OfflineLogs(path, **buffer_kwargs)``)."""
        return cls(path, **buffer_kwargs)

    @classmethod
    def from_tensordict(
        cls,
        data: TensorDictBase,
        path: str | os.PathLike,
        metadata: Mapping[str, Any] | None = None,
        **buffer_kwargs: Any,
    ) -> OfflineLogs:
        """Writes ``data`` as a dataset at ``path`` and opens it.

        Args:
            data (TensorDictBase): the logs, with batch dims ``[rows]`` or
                ``[env, time]`` (a collector's layout: time last; stored as
                ``[time, env]``). Every leaf must be a tensor.
            path (str or Path): the dataset folder; it must not exist or be an empty folder.
            metadata (dict, optional): JSON-serialisable description of the data, saved in
                ``metadata.json`` (the keys ``"format_version"`` and ``"storage"`` are
                reserved).
            **buffer_kwargs: forwarded to :class:`OfflineLogs` (batch_size, sampler, ...).

        Raises:
            ValueError: ``data`` is not a TensorDict of tensors with 1 or 2 batch dims, a
                floating-point entry holds a NaN or an infinity, or session data (with
                ``("collector", "traj_ids")``) holds a broken trajectory
                (:func:`~drpo_rl.data.sessions.check_sessions`); nothing is written then.
        """
        check_tensordict(data)
        if TRAJ_KEY in data.keys(True, True):
            check_sessions(data)
        metadata = {} if metadata is None else dict(metadata)
        ndim = data.batch_dims
        with StagedDataset(path) as staged:
            storage = staged.make_storage(data.batch_size.numel(), ndim=ndim)
            ReplayBuffer(storage=storage).extend(data)
            staged.commit(storage, metadata)
        return cls(path, **buffer_kwargs)

    @staticmethod
    def is_complete(path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a completely written dataset (its marker is present)."""
        return (Path(path) / COMPLETE_MARKER).is_file()

    @property
    def metadata(self) -> dict[str, Any]:
        """The parsed ``metadata.json`` (a copy; editing it changes nothing on disk)."""
        return json.loads(json.dumps(self._metadata))

    @property
    def data_path_root(self) -> Path:
        return self.root

    @property
    def data_path(self) -> Path:
        return self.root

    def _is_downloaded(self) -> bool:
        return self.is_complete(self.root)

    def __repr__(self) -> str:
        layout = self._metadata["storage"]
        return (
            f"{type(self).__name__}(path={str(self.root)!r}, shape={layout['shape']}, "
            f"sampler={type(self._sampler).__name__}, writer={type(self._writer).__name__}, "
            f"batch_size={self._batch_size})"
        )


#: Transforms that act on written data only, never on sampled batches.
WRITE_ONLY_TRANSFORMS = (Reward2GoTransform,)


def check_read_transform(transform: Any) -> None:
    """Refuses a dataset transform that would silently do nothing on read.

    TorchRL's ``Reward2GoTransform`` computes the return-to-go when data is *written* to a
    buffer (its inverse pass); on sampled batches it does nothing, and on
    ``SliceSampler`` slices it would stop at each slice's end. Session logs store the
    return-to-go when they are written (``"return_to_go"``, see
    :mod:`drpo_rl.data.layout`); apply the transform to ``logs[:]`` for another gamma.

    Example:
        >>> from torchrl.envs import Reward2GoTransform
        >>> check_read_transform(Reward2GoTransform(gamma=0.9))
        Traceback (most recent call last):
        ...
        ValueError: transform: Reward2GoTransform acts only when data is written, ...
    """
    parts = list(transform) if isinstance(transform, Compose) else [transform]
    for part in parts:
        if isinstance(part, WRITE_ONLY_TRANSFORMS):
            raise ValueError(
                f"transform: {type(part).__name__} acts only when data is written, and an "
                "OfflineLogs dataset is read-only: on sampled batches it would do nothing. "
                "Session logs store the return-to-go ('return_to_go', for the gamma in "
                "metadata['return_to_go']); for another gamma, apply the transform to "
                "logs[:] (e.g. transform.inv(logs[:]))"
            )


def _plain_copy(tensor: torch.Tensor) -> torch.Tensor:
    # A plain tensor: a MemoryMappedTensor's clone would keep the subclass (and its file name).
    return tensor.as_subclass(torch.Tensor).clone()
