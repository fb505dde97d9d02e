"""The offline-logs dataset: a read-only TorchRL replay buffer over a memory-mapped folder.

On disk a dataset is one folder::

    <path>/
        storage/          the TensorDict, memory-mapped by ``LazyMemmapStorage``
                          (tensordict's ``meta.json`` + one ``.memmap`` file per key, and
                          TorchRL's ``storage_metadata.json``)
        metadata.json     what produced the data (env config, scenario, seed, versions, ...)
                          plus the storage layout
        COMPLETE          written last: only a folder holding it is a dataset

A dataset is written in a hidden sibling folder (``.<name>.partial-<pid>-<hex>``) and renamed
to ``<path>`` only once the marker is in place, so a killed write never appears at ``<path>``
and never loads as complete. Loading reads JSON and memory-maps tensors; nothing is unpickled:
before TorchRL opens the storage, every file in it is checked to be one that a TensorDict of
plain tensors writes, each tensor file exactly the size its ``meta.json`` entry gives.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tensordict import NonTensorData, TensorDictBase, is_tensor_collection

# The file and folder names tensordict gives entries on disk. Private, but the storage check
# must name exactly the files that tensordict's own load_memmap then opens.
from tensordict._utils_key_json import _encode_key_for_filesystem
from torchrl.data import (
    ImmutableDatasetWriter,
    LazyMemmapStorage,
    RandomSampler,
    ReplayBuffer,
)
from torchrl.data.datasets.common import BaseDatasetExperienceReplay
from torchrl.data.replay_buffers import Sampler, Writer

from drpo_rl.files import fsync_path, fsync_tree, write_atomic
from envs.processes import process_alive
from envs.ratings import TableError

__all__ = ["FORMAT_VERSION", "OfflineLogs"]

#: Version of the on-disk layout; bumped when a change makes old folders unreadable.
FORMAT_VERSION = 1

_STORAGE_DIR = "storage"
_METADATA_FILE = "metadata.json"
_COMPLETE_MARKER = "COMPLETE"
# What a TensorDict of plain tensors writes in each storage folder, besides its .memmap
# files and sub-folders; TorchRL adds its index file at the top.
_TENSORDICT_META = "meta.json"
_TORCHRL_META = "storage_metadata.json"
_TENSORDICT_TYPE = "<class 'tensordict._td.TensorDict'>"
# Keys of a tensordict meta.json that describe the folder, not an entry.
_TENSORDICT_FOLDER_KEYS = ("shape", "device", "_type")

log = logging.getLogger(__name__)
# Keys of metadata.json that describe the folder itself; callers' metadata may not use them.
_RESERVED_KEYS = ("format_version", "storage")


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
        transform (Transform, optional): applied to sampled batches.
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
        self.root = Path(path)
        self._metadata = _read_metadata(self.root)
        layout = self._metadata["storage"]
        # tensordict would unpickle non-tensor entries and zero-extend short tensor files.
        _check_storage_folder(self.root / _STORAGE_DIR)
        storage = LazyMemmapStorage(
            layout["num_rows"],
            scratch_dir=self.root / _STORAGE_DIR,
            ndim=layout["ndim"],
            auto_cleanup=False,
        )
        # Same folder as scratch_dir: TorchRL memory-maps the files in place (no copy).
        storage.loads(self.root / _STORAGE_DIR)
        stored_shape = list(storage._storage.shape)
        if stored_shape != layout["shape"]:
            raise ValueError(
                f"{self.root / _METADATA_FILE}: storage.shape is {layout['shape']} but the "
                f"tensors in {self.root / _STORAGE_DIR} have shape {stored_shape}"
            )
        # Once per open, not per sample: a NaN reward would otherwise surface as a NaN loss
        # far from its cause.
        _refuse_non_finite(
            storage._storage,
            lambda key: _memmap_file(self.root / _STORAGE_DIR, key),
            "a dataset holds no NaN or infinity",
        )
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
            ValueError: ``data`` is not a TensorDict of tensors with 1 or 2 batch dims, or a
                floating-point entry holds a NaN or an infinity (nothing is written then).
        """
        _check_tensordict(data)
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
        return (Path(path) / _COMPLETE_MARKER).is_file()

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


class StagedDataset:
    """A dataset being written: a hidden sibling of ``path`` that becomes ``path`` on commit.

    Used as a context manager; leaving it without :meth:`commit` (an exception) deletes the
    staging folder, and a process killed inside it leaves only the hidden folder, which
    never loads and is removed by the next write to the same ``path``.

    Examples:
        >>> import tempfile, torch
        >>> from tensordict import TensorDict
        >>> from torchrl.data import ReplayBuffer
        >>> from drpo_rl.data.dataset import StagedDataset
        >>> path = f"{tempfile.mkdtemp()}/logs"
        >>> with StagedDataset(path) as staged:
        ...     storage = staged.make_storage(8)
        ...     index = ReplayBuffer(storage=storage).extend(
        ...         TensorDict({"x": torch.arange(8)}, batch_size=[8]))
        ...     staged.commit(storage, {"note": "eight rows"})
        >>> from drpo_rl.data import OfflineLogs
        >>> OfflineLogs(path)[:3]["x"].tolist()
        [0, 1, 2]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.dir = self.path.parent / f".{self.path.name}.partial-{os.getpid()}-{uuid.uuid4().hex}"
        self._committed = False

    def __enter__(self) -> StagedDataset:
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise FileExistsError(
                f"{self.path} already exists and is not an empty folder; refusing to overwrite it"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_stagings(self.path)
        self.dir.mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def storage_dir(self) -> Path:
        return self.dir / _STORAGE_DIR

    def make_storage(self, num_rows: int, *, ndim: int = 1) -> LazyMemmapStorage:
        """An empty ``LazyMemmapStorage`` of ``num_rows`` interactions in the staging folder.

        Fill it through a plain :class:`~torchrl.data.ReplayBuffer` (``ndim=2`` storages take
        ``[env, time]`` batches); a ``TensorDictReplayBuffer`` would also store its
        ``"index"`` entry.
        """
        return LazyMemmapStorage(
            num_rows, scratch_dir=self.storage_dir, ndim=ndim, auto_cleanup=False
        )

    def commit(self, storage: LazyMemmapStorage, metadata: Mapping[str, Any]) -> None:
        """Finishes the dataset: storage index, metadata, marker (last), then the rename.

        Refuses (``ValueError``, nothing left behind) a storage holding a NaN or an infinity
        in a floating-point entry. Everything written is flushed to the disk before the
        marker, so a power cut cannot leave a marked dataset with missing pages.
        """
        clash = [key for key in _RESERVED_KEYS if key in metadata]
        if clash:
            raise ValueError(f"metadata keys {clash} are reserved for the dataset layout")
        if not storage.initialized or len(storage) == 0:
            raise ValueError("cannot commit an empty dataset: nothing was written to the storage")
        shape = list(storage._storage.shape)
        if len(storage) != math.prod(shape):
            raise ValueError(
                f"the storage holds {len(storage)} interactions but has room for "
                f"{math.prod(shape)}; a dataset must be filled exactly"
            )
        _refuse_non_finite(
            storage._storage,
            lambda key: self.path,
            "refusing to write a dataset holding NaN or infinity",
        )
        # Zero-copy: the storage already lives in storage_dir; this adds TorchRL's index file.
        storage.dumps(self.storage_dir)
        # The tensors were written through memory maps: on the disk only once fsync'ed.
        fsync_tree(self.storage_dir)
        document = {
            "format_version": FORMAT_VERSION,
            "storage": {"shape": shape, "ndim": storage.ndim, "num_rows": len(storage)},
            **metadata,
        }
        try:
            text = json.dumps(document, indent=2, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata is not JSON-serialisable: {err}") from err
        write_atomic(self.dir / _METADATA_FILE, lambda tmp: tmp.write_text(text))
        marker = json.dumps({"format_version": FORMAT_VERSION})
        write_atomic(self.dir / _COMPLETE_MARKER, lambda tmp: tmp.write_text(marker))
        try:
            # Atomic; replaces `path` only if it is absent or an empty folder.
            os.replace(self.dir, self.path)
        except OSError as err:
            raise FileExistsError(
                f"could not move the finished dataset to {self.path} ({err}); it was left at "
                f"{self.dir}"
            ) from err
        self._committed = True
        fsync_path(self.path.parent)  # the rename itself


def _read_metadata(root: Path) -> dict[str, Any]:
    if not root.exists():
        raise FileNotFoundError(f"no dataset at {root}: the folder does not exist")
    if not OfflineLogs.is_complete(root):
        raise FileNotFoundError(
            f"{root} holds no complete dataset (no {_COMPLETE_MARKER} marker): it was never "
            "written by OfflineLogs or its write was interrupted"
        )
    metadata = _read_json(root / _METADATA_FILE)
    if not isinstance(metadata, dict):
        raise ValueError(
            f"{root / _METADATA_FILE}: expected a JSON object, got a {type(metadata).__name__}"
        )
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{root / _METADATA_FILE}: format_version is {version!r}, this drpo_rl reads "
            f"{FORMAT_VERSION}"
        )
    return metadata


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path}: not a JSON document ({err})") from err


def _check_storage_folder(folder: Path) -> None:
    """Refuses a storage folder holding anything but a TensorDict of plain tensors.

    Checks, from the JSON files alone, that ``folder`` holds exactly TorchRL's
    ``storage_metadata.json`` of a TensorDict storage and a tensordict folder: its
    ``meta.json`` and, per entry, a ``.memmap`` file of ``shape x dtype`` bytes or a
    sub-folder of the same kind. Anything else (a non-tensor entry, which tensordict
    stores as a pickle, an extra or missing file, a link) raises ``ValueError`` naming it.
    """
    if not folder.is_dir():
        raise ValueError(f"{folder}: the storage folder is missing")
    index = _read_json(folder / _TORCHRL_META) if (folder / _TORCHRL_META).is_file() else None
    if not isinstance(index, dict) or index.get("is_pytree") is not False:
        raise ValueError(
            f"{folder / _TORCHRL_META}: expected TorchRL's index of a TensorDict storage "
            f'(a JSON object with "is_pytree": false), got {index!r}'
        )
    _check_tensordict_folder(folder, extra_files=(_TORCHRL_META,))


def _check_tensordict_folder(folder: Path, extra_files: tuple[str, ...] = ()) -> None:
    meta_path = folder / _TENSORDICT_META
    if not meta_path.is_file():
        raise ValueError(f"{meta_path}: missing; {folder} is not a TensorDict folder")
    meta = _read_json(meta_path)
    if not isinstance(meta, dict) or meta.get("_type") != _TENSORDICT_TYPE:
        found = meta.get("_type") if isinstance(meta, dict) else meta
        raise ValueError(
            f"{meta_path}: expected a TensorDict ({_TENSORDICT_TYPE}), got {found!r}; a "
            "dataset holds only TensorDicts of tensors"
        )
    expected_files = {name: None for name in (_TENSORDICT_META, *extra_files)}
    sub_folders = []
    for key, entry in meta.items():
        if key in _TENSORDICT_FOLDER_KEYS:
            continue
        name = _encode_key_for_filesystem(key)
        if isinstance(entry, dict) and entry.get("type") == "TensorDict":
            sub_folders.append(name)
        elif isinstance(entry, dict) and "dtype" in entry and "shape" in entry:
            expected_files[f"{name}.memmap"] = _tensor_bytes(meta_path, key, entry)
        else:
            kind = entry.get("type") if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(
                f"{meta_path}: entry {key!r} is a {kind}, not a tensor or a TensorDict; "
                "tensordict stores such entries as pickle files, which a dataset never holds"
            )
    found_files = {}
    with os.scandir(folder) as entries:
        for item in entries:
            path = folder / item.name
            if item.is_symlink():
                raise ValueError(f"{path}: a link in a dataset's storage folder; refusing it")
            if item.is_dir(follow_symlinks=False) and item.name in sub_folders:
                continue
            if item.is_file(follow_symlinks=False) and item.name in expected_files:
                found_files[item.name] = item.stat(follow_symlinks=False).st_size
                continue
            raise ValueError(
                f"{path}: not a file of the stored TensorDict (a dataset's storage holds only "
                f"{_TENSORDICT_META}, {_TORCHRL_META} and the .memmap tensor files and "
                f"folders its {_TENSORDICT_META} lists); refusing to load it"
            )
    for name, expected in expected_files.items():
        actual = found_files.get(name)
        if actual is None and expected != 0:  # tensordict writes no file for 0 elements
            raise ValueError(f"{folder / name}: missing ({meta_path} lists it)")
        if actual is not None and expected is not None and actual != expected:
            raise ValueError(
                f"{folder / name}: expected {expected} bytes (shape x dtype size in "
                f"{meta_path}), found {actual} bytes; the file was truncated or replaced"
            )
    for name in sub_folders:
        if not (folder / name).is_dir():
            raise ValueError(f"{folder / name}: missing folder ({meta_path} lists it)")
        _check_tensordict_folder(folder / name)


def _tensor_bytes(meta_path: Path, key: str, entry: Mapping[str, Any]) -> int:
    """Bytes of the ``.memmap`` file of a plain (not nested) tensor entry of ``meta.json``."""
    shape, dtype_name = entry["shape"], entry["dtype"]
    dtype = getattr(torch, str(dtype_name).removeprefix("torch."), None)
    valid_shape = isinstance(shape, list) and all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
    )
    if not isinstance(dtype, torch.dtype) or not valid_shape or entry.get("is_nested"):
        raise ValueError(
            f"{meta_path}: entry {key!r} is not a plain tensor (dtype {dtype_name!r}, shape "
            f"{shape!r}, is_nested {entry.get('is_nested')!r})"
        )
    return math.prod(shape) * dtype.itemsize


def _check_tensordict(data: Any) -> None:
    if not isinstance(data, TensorDictBase):
        raise TypeError(f"data must be a TensorDict, got {type(data).__name__}")
    if data.batch_dims not in (1, 2):
        raise ValueError(
            f"data must have 1 batch dim (rows) or 2 ([env, time]), got batch_size "
            f"{list(data.batch_size)}"
        )
    if data.batch_size.numel() == 0:
        raise ValueError(f"data is empty (batch_size {list(data.batch_size)})")
    # Non-tensor leaves would be pickled by tensordict; datasets stay pickle-free.
    for key, value in data.items(True, True, is_leaf=_is_leaf_or_non_tensor):
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"data[{key!r}] is a {type(value).__name__}, not a tensor")


def _is_leaf_or_non_tensor(cls: type) -> bool:
    return not is_tensor_collection(cls) or issubclass(cls, NonTensorData)


# Rows per block when locating a non-finite value: bounds the temporary memory.
_FINITE_CHECK_ROWS = 1 << 16


def _refuse_non_finite(
    data: TensorDictBase, file_of: Callable[[Any], Path], consequence: str
) -> None:
    """Raise a TableError naming ``file_of(key)``, the key, the first row and the value of
    ``data``'s first NaN or infinity, followed by ``consequence``."""
    found = _first_non_finite(data)
    if found is not None:
        key, row, value = found
        raise TableError(
            file_of(key),
            f"{_describe_row(row)}: expected finite numbers, found {value!r}; {consequence}",
            column=key,
        )


def _first_non_finite(data: TensorDictBase) -> tuple[Any, tuple[int, ...], float] | None:
    """The first NaN or infinity of ``data``'s floating-point leaves, as ``(key, batch
    index, value)`` (keys in storage order, rows in order within a key), or None."""
    for key, value in data.items(True, True):
        if not (value.is_floating_point() or value.is_complex()):
            continue
        # Fast path (a 1M-row dataset opens in tens of ms, not a second): a sum is finite
        # unless a term is NaN or infinite, or finite terms overflow, in which case the
        # exact search below finds nothing and the key passes.
        if bool(torch.isfinite(value.sum())):
            continue
        for start in range(0, value.shape[0], _FINITE_CHECK_ROWS):
            block = value[start : start + _FINITE_CHECK_ROWS]
            bad = ~torch.isfinite(block)
            if block.dim() > data.batch_dims:
                bad = bad.flatten(data.batch_dims).any(-1)
            if not bool(bad.any()):
                continue
            index = [int(i) for i in bad.nonzero()[0]]
            index[0] += start
            element = value[tuple(index)].reshape(-1)
            return key, tuple(index), element[~torch.isfinite(element)][0].item()
    return None


def _describe_row(index: tuple[int, ...]) -> str:
    """A storage index as ``logs[...]`` presents it: ``[time, env]`` storage is shown
    ``[env, time]``."""
    if len(index) == 1:
        return f"row {index[0]}"
    step, env = index
    return f"row [{env}, {step}] ([env, time])"


def _memmap_file(storage_dir: Path, key: Any) -> Path:
    """The file tensordict keeps the tensor of ``key`` in."""
    parts = (key,) if isinstance(key, str) else key
    folder = storage_dir.joinpath(*(_encode_key_for_filesystem(part) for part in parts[:-1]))
    return folder / f"{_encode_key_for_filesystem(parts[-1])}.memmap"


def _remove_abandoned_stagings(path: Path) -> None:
    """Deletes staging folders of ``path`` whose writing process no longer runs, saying so."""
    for candidate in path.parent.glob(f".{path.name}.partial-*"):
        pid = candidate.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            # A log record, not a warning: restarting is the expected recovery, not a fault.
            log.warning(
                "found an interrupted write of %s at %s (process %s no longer runs); "
                "removing it and starting again",
                path,
                candidate,
                pid,
            )
            shutil.rmtree(candidate, ignore_errors=True)
