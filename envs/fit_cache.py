"""Where fits of ratings files are kept: on the disk across processes, in memory within one.

:func:`load_or_fit` keeps each fit (:func:`envs.fitting.fit_embeddings`) on the disk, keyed
by the ratings file's SHA-256 and the settings, so that re-making an env in another process
does not refit. :func:`shared_fit` remembers the fits of this process on top of it, so that
building the same env again (a benchmark builds its env many times) does not even re-read
and re-hash the ratings file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import time
from collections import OrderedDict
from pathlib import Path

import torch

from envs.common.checks import is_real
from envs.common.files import (
    file_sha256,
    read_json,
    remove_stale_temporaries,
    write_atomic,
    write_json,
)
from envs.fitting import FitSettings, FittedEmbeddings, fit_embeddings
from envs.ratings import read_ratings

__all__ = ["default_cache_dir", "load_or_fit", "shared_fit"]

log = logging.getLogger(__name__)

# 2: user_counts stored with the vectors.
_CACHE_FORMAT = 2

# The fits shared_fit remembers (the most recently used last); a few, since each holds a
# catalogue's and a population's vectors.
_SHARED: OrderedDict[tuple, FittedEmbeddings] = OrderedDict()
_SHARED_AT_MOST = 8


def default_cache_dir() -> Path:
    """``$DRPO_RL_CACHE/fitted`` if set, else ``~/.cache/drpo_rl/fitted``."""
    root = os.environ.get("DRPO_RL_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "drpo_rl"
    return base / "fitted"


def load_or_fit(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    settings: FitSettings | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FittedEmbeddings:
    """The fit of a ratings file, from the cache when this file and settings were fitted.

    The cache entry is ``<cache_dir>/<file stem>-<key>.pt`` (tensors) and ``.json``
    (settings, source, errors), where the key hashes the file's SHA-256, its format and
    rating scale, and the settings; a changed file or setting is a new entry. Each file is
    written with :func:`envs.common.files.write_atomic`; the next fit of an entry removes
    the temporary files that killed writers left (:func:`~envs.common.files.
    remove_stale_temporaries`).
    """
    settings = FitSettings() if settings is None else settings
    cache = default_cache_dir() if cache_dir is None else Path(cache_dir)
    describe = {
        "cache_format": _CACHE_FORMAT,
        "sha256": file_sha256(path),
        "format": format,
        "rating_scale": [float(v) for v in rating_scale],
        "settings": dataclasses.asdict(settings),
    }
    key = hashlib.sha256(json.dumps(describe, sort_keys=True).encode()).hexdigest()[:16]
    stem = cache / f"{Path(path).stem}-{key}"
    tensors_file, meta_file = stem.with_suffix(".pt"), stem.with_suffix(".json")
    if tensors_file.is_file() and meta_file.is_file():
        cached = _read_entry(tensors_file, meta_file, describe, settings)
        if cached is not None:
            return cached
    fit_started = time.time()
    fit = fit_embeddings(read_ratings(path, format=format, rating_scale=rating_scale), settings)
    cache.mkdir(parents=True, exist_ok=True)
    tensors = {name: getattr(fit, name) for name in _TENSOR_NAMES}
    meta = {
        "key": describe,
        "delta": fit.delta,
        "rmse": fit.rmse,
        "source": fit.source,
        "seconds": fit.seconds,
        "torch": torch.__version__,
    }
    # Two processes fitting the same file at once both leave a complete entry: each
    # writes its own temporary files and renames them.
    for target in (tensors_file, meta_file):
        remove_stale_temporaries(target, older_than=fit_started)
    write_atomic(tensors_file, lambda tmp: torch.save(tensors, tmp))
    write_json(meta_file, meta, sort_keys=True)
    return fit


_TENSOR_NAMES = ("users", "items", "user_ids", "item_ids", "item_counts", "user_counts")
_META_FIELDS = {
    "delta": is_real,
    "rmse": lambda value: isinstance(value, dict) and all(map(is_real, value.values())),
    "seconds": is_real,
    "source": lambda value: isinstance(value, dict),
}


def _read_entry(
    tensors_file: Path, meta_file: Path, describe: dict, settings: FitSettings
) -> FittedEmbeddings | None:
    """The cached fit, or None (after saying so) when the entry is unreadable or damaged:
    a cache is rebuilt, not trusted blindly nor made the user's problem."""
    try:
        meta = read_json(meta_file, kind=dict)
        if meta.get("key") != describe:
            return None  # another file or settings hashed to this name: refit over it
        for field, valid in _META_FIELDS.items():
            if not valid(meta.get(field)):
                raise ValueError(f"{meta_file}: entry {field!r} is missing or invalid")
        tensors = torch.load(tensors_file, weights_only=True, map_location="cpu")
        if not (
            isinstance(tensors, dict)
            and set(tensors) == set(_TENSOR_NAMES)
            and all(isinstance(t, torch.Tensor) for t in tensors.values())
        ):
            raise ValueError(f"{tensors_file}: expected the tensors {list(_TENSOR_NAMES)}")
        return FittedEmbeddings(
            **tensors,
            delta=meta["delta"],
            rmse=meta["rmse"],
            settings=settings,
            source=meta["source"],
            seconds=meta["seconds"],
        )
    except (ValueError, TypeError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        log.warning(
            "the fit cache entry %s is damaged (%s); fitting the ratings again and replacing it",
            tensors_file.with_suffix(""),
            " ".join(str(err).split())[:300],
        )
        return None


def shared_fit(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    rating_scale: tuple[float, float] = (1.0, 5.0),
    settings: FitSettings | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FittedEmbeddings:
    """:func:`load_or_fit`, remembered for the rest of this process.

    A second call for the same file and arguments returns the same
    :class:`~envs.fitting.FittedEmbeddings` (shared: never modify its tensors in place)
    without reading, hashing or fitting. The file counts as the same while its absolute
    path, inode, size and modification time (in ns) are: a file rewritten or replaced is
    read again (then found in the disk cache if its bytes did not change). A rewrite that
    keeps the size within the file system's timestamp granularity (a few ms) would go
    unseen; ratings files are not rewritten while envs are built from them.
    """
    settings = FitSettings() if settings is None else settings
    cache = default_cache_dir() if cache_dir is None else Path(cache_dir)
    stat = os.stat(path)
    key = (
        os.path.abspath(path),
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
        format,
        tuple(float(v) for v in rating_scale),
        settings,
        os.path.abspath(cache),
    )
    if key in _SHARED:
        _SHARED.move_to_end(key)
        return _SHARED[key]
    fit = load_or_fit(
        path, format=format, rating_scale=rating_scale, settings=settings, cache_dir=cache
    )
    _SHARED[key] = fit
    if len(_SHARED) > _SHARED_AT_MOST:
        _SHARED.popitem(last=False)
    return fit
