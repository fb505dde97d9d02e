"""The on-disk layout of an offline-logs dataset folder, and the checks that stored files match it.

A dataset folder (see :class:`drpo_rl.data.OfflineLogs`) holds ``storage/`` (the
memory-mapped TensorDict), ``metadata.json`` and the ``COMPLETE`` marker. Loading reads
JSON and memory-maps tensors; nothing is unpickled: before TorchRL opens the storage, every
file in it is checked to be one that a TensorDict of plain tensors writes, each tensor file
exactly the size its ``meta.json`` entry gives, and no floating-point value is a NaN or an
infinity. :func:`settings_differences` is the one comparison of stored settings with
requested ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tensordict import NonTensorData, TensorDictBase, is_tensor_collection

# The file and folder names tensordict gives entries on disk. Private, but the storage check
# must name exactly the files that tensordict's own load_memmap then opens.
from tensordict._utils_key_json import _encode_key_for_filesystem

from envs.common.files import file_sha256, read_json
from envs.ratings import TableError

#: Keys of a logged interaction that are the suite's own (the others are TorchRL's:
#: "observation", "action", ("next", "reward"), ...): the log-propensity of the logged
#: action under the behaviour policy, and the id of the behaviour agent (analysis only).
BEHAVIOR_LOG_PROB_KEY = "behavior_log_prob"
BEHAVIOR_AGENT_KEY = "behavior_agent"

#: Keys of session logs (``[time, env]`` storage, each env's steps contiguous): the
#: trajectory id of the session a step belongs to (unique per session, TorchRL's collector
#: key, what ``SliceSampler(traj_key=TRAJ_KEY)`` cuts on); the step's index in its
#: session, int64 ``[..., 1]``, 0 at the first step (TorchRL's ``StepCounter`` key); and
#: the discounted return-to-go from the step to its session's end, float32 ``[..., 1]``,
#: for the ``gamma`` recorded in ``metadata["return_to_go"]``.
TRAJ_KEY = ("collector", "traj_ids")
STEP_KEY = "step_count"
RETURN_TO_GO_KEY = "return_to_go"

#: Version of the on-disk layout; bumped when a change makes old folders unreadable.
FORMAT_VERSION = 1

STORAGE_DIR = "storage"
METADATA_FILE = "metadata.json"
COMPLETE_MARKER = "COMPLETE"
# Keys of metadata.json that describe the folder itself; callers' metadata may not use them.
RESERVED_KEYS = ("format_version", "storage")
# What a TensorDict of plain tensors writes in each storage folder, besides its .memmap
# files and sub-folders; TorchRL adds its index file at the top.
_TENSORDICT_META = "meta.json"
_TORCHRL_META = "storage_metadata.json"
_TENSORDICT_TYPE = "<class 'tensordict._td.TensorDict'>"
# Keys of a tensordict meta.json that describe the folder, not an entry.
_TENSORDICT_FOLDER_KEYS = ("shape", "device", "_type")


def settings_differences(stored: Any, requested: Any, prefix: str = "") -> list[str]:
    """Every difference between ``stored`` and ``requested`` settings, nested keys dotted.

    Both are compared as they read back from JSON (tuples equal lists).

    Example:
        >>> settings_differences({"seed": 0, "env": {"num_items": 20}},
        ...                      {"seed": 1, "env": {"num_items": 20}})
        ['seed: stored 0, requested 1']
        >>> settings_differences({"env": {"a": 1}}, {"env": {"a": 2, "b": (3,)}})
        ['env.a: stored 1, requested 2', 'env.b: stored None, requested [3]']
    """
    stored, requested = json.loads(json.dumps(stored)), json.loads(json.dumps(requested))
    if isinstance(stored, dict) and isinstance(requested, dict):
        found = []
        for key in sorted(set(stored) | set(requested), key=str):
            found += settings_differences(stored.get(key), requested.get(key), f"{prefix}{key}.")
        return found
    if stored != requested:
        return [f"{prefix.removesuffix('.')}: stored {stored!r}, requested {requested!r}"]
    return []


def read_metadata(root: Path) -> dict[str, Any]:
    """The parsed ``metadata.json`` of the complete dataset at ``root``, its version checked."""
    if not root.exists():
        raise FileNotFoundError(f"no dataset at {root}: the folder does not exist")
    if not (root / COMPLETE_MARKER).is_file():
        raise FileNotFoundError(
            f"{root} holds no complete dataset (no {COMPLETE_MARKER} marker): it was never "
            "written by OfflineLogs or its write was interrupted"
        )
    metadata = read_json(root / METADATA_FILE, kind=dict)
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{root / METADATA_FILE}: format_version is {version!r}, this drpo_rl reads "
            f"{FORMAT_VERSION}"
        )
    return metadata


def check_metadata_layout(root: Path, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata["storage"]``, refused (``ValueError`` naming the key) unless it has every
    entry a dataset's layout needs, of the right type."""
    path = root / METADATA_FILE
    layout = metadata.get("storage")
    if not isinstance(layout, dict):
        raise ValueError(
            f"{path}: missing key 'storage' (the layout of the stored tensors), or not an "
            f"object: {layout!r}; the file was not written by OfflineLogs or was edited"
        )
    for key, ok in (
        ("shape", lambda v: isinstance(v, list) and all(_is_size(n) for n in v)),
        ("ndim", lambda v: v in (1, 2)),
        ("num_rows", _is_size),
        ("files", lambda v: isinstance(v, dict) and all(isinstance(e, dict) for e in v.values())),
    ):
        if key not in layout:
            raise ValueError(
                f"{path}: missing key 'storage.{key}'; the file was not written by this "
                "version of OfflineLogs or was edited (write the dataset again)"
            )
        if not ok(layout[key]):
            raise ValueError(f"{path}: key 'storage.{key}' has an invalid value {layout[key]!r}")
    if math.prod(layout["shape"]) != layout["num_rows"] or len(layout["shape"]) != layout["ndim"]:
        raise ValueError(
            f"{path}: storage.shape {layout['shape']}, storage.ndim {layout['ndim']} and "
            f"storage.num_rows {layout['num_rows']} disagree"
        )
    return layout


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def record_files(folder: Path) -> dict[str, dict[str, Any]]:
    """What ``metadata.json`` records of a storage folder: per tensor file (path relative to
    ``folder``), its shape, dtype and SHA-256, so that opening can tell any change."""
    return {
        name: {**entry, "sha256": _sha256_or_empty(folder / name)}
        for name, entry in _listed_tensors(folder).items()
    }


def check_recorded_layout(folder: Path, layout: Mapping[str, Any], metadata_path: Path) -> None:
    """Refuses a storage folder that disagrees with what ``metadata.json`` recorded of it:
    TorchRL's row count, the tensor files, and their shapes and dtypes (in ``meta.json``).
    The error names the file that disagrees. (Their bytes: :func:`check_recorded_bytes`.)"""
    index_path = folder / _TORCHRL_META
    stored_len = read_json(index_path).get("len")
    if stored_len != layout["num_rows"]:
        raise ValueError(
            f"{index_path}: records {stored_len!r} rows but {metadata_path} records "
            f"{layout['num_rows']}; the storage index was edited or belongs to other data"
        )
    recorded, listed = layout["files"], _listed_tensors(folder)
    for name in sorted(set(recorded) | set(listed)):
        if name not in listed:
            raise ValueError(
                f"{folder / name}: recorded in {metadata_path} but not listed by the storage's "
                f"{_TENSORDICT_META}"
            )
        if name not in recorded:
            raise ValueError(
                f"{folder / name}: listed by the storage's {_TENSORDICT_META} but not "
                f"recorded in {metadata_path}; the storage was changed after it was written"
            )
        entry = recorded[name]
        for key in ("shape", "dtype"):
            if entry.get(key) != listed[name][key]:
                raise ValueError(
                    f"{folder / name}: {_TENSORDICT_META} gives {key} {listed[name][key]!r}, "
                    f"{metadata_path} recorded {entry.get(key)!r}; the layout was edited"
                )


def check_recorded_bytes(folder: Path, layout: Mapping[str, Any], metadata_path: Path) -> None:
    """Refuses a tensor file whose SHA-256 differs from the one ``metadata.json`` recorded
    (bytes edited or replaced after the dataset was written), naming it."""
    for name, entry in sorted(layout["files"].items()):
        digest = _sha256_or_empty(folder / name)
        if entry.get("sha256") != digest:
            raise ValueError(
                f"{folder / name}: its bytes changed since the dataset was written (SHA-256 "
                f"{digest}, {metadata_path} recorded {entry.get('sha256')!r})"
            )


def _sha256_or_empty(path: Path) -> str:
    # tensordict writes no file for a tensor of 0 elements.
    return file_sha256(path) if path.exists() else hashlib.sha256(b"").hexdigest()


def _listed_tensors(folder: Path, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every tensor file a tensordict folder's ``meta.json`` lists (recursively), by path
    relative to the top folder, with its shape and dtype as listed."""
    meta = read_json(folder / _TENSORDICT_META)
    found = {}
    for key, entry in meta.items():
        if key in _TENSORDICT_FOLDER_KEYS or not isinstance(entry, dict):
            continue
        name = _encode_key_for_filesystem(key)
        if entry.get("type") == "TensorDict":
            found.update(_listed_tensors(folder / name, f"{prefix}{name}/"))
        else:
            found[f"{prefix}{name}.memmap"] = {
                "shape": entry.get("shape"),
                "dtype": str(entry.get("dtype")),
            }
    return found


def check_storage_folder(folder: Path) -> None:
    """Refuses a storage folder holding anything but a TensorDict of plain tensors.

    Checks, from the JSON files alone, that ``folder`` holds exactly TorchRL's
    ``storage_metadata.json`` of a TensorDict storage and a tensordict folder: its
    ``meta.json`` and, per entry, a ``.memmap`` file of ``shape x dtype`` bytes or a
    sub-folder of the same kind. Anything else (a non-tensor entry, which tensordict
    stores as a pickle, an extra or missing file, a link) raises ``ValueError`` naming it.
    """
    if not folder.is_dir():
        raise ValueError(f"{folder}: the storage folder is missing")
    index = read_json(folder / _TORCHRL_META) if (folder / _TORCHRL_META).is_file() else None
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
    meta = read_json(meta_path)
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


def check_tensordict(data: Any) -> None:
    """Refuses what a dataset cannot hold: not a TensorDict of tensors with 1 or 2 batch dims."""
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


def refuse_non_finite(
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


def memmap_file(storage_dir: Path, key: Any) -> Path:
    """The file tensordict keeps the tensor of ``key`` in."""
    parts = (key,) if isinstance(key, str) else key
    folder = storage_dir.joinpath(*(_encode_key_for_filesystem(part) for part in parts[:-1]))
    return folder / f"{_encode_key_for_filesystem(parts[-1])}.memmap"
