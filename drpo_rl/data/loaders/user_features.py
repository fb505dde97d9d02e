"""MovieLens user features (age, gender, occupation) as observation columns.

Files (format from the name): ml-100k ``u.user`` (``user|age|gender|occupation|zip``, no
header), ml-1m ``users.dat`` (``user::gender::age::occupation::zip``, no header; age and
occupation are codes) and RecBole ``*.user`` (tab-separated, header with ``user_id``,
``age``, ``gender``, ``occupation``). The zip code is not used.

Encoding, in this order: ``age / 100`` (1 column) | one-hot gender | one-hot occupation,
the categories being the sorted values of the file (``vocabulary``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drpo_rl.data.loaders.finite import as_float32
from envs.common.tables import TableError, read_table

__all__ = ["UserFeatures", "read_user_features"]

_LAYOUTS = {
    # format: (separator, header, columns in file order)
    "ml-100k": ("|", False, ("user_id", "age", "gender", "occupation", "zip_code")),
    "ml-1m": ("::", False, ("user_id", "gender", "age", "occupation", "zip_code")),
    "recbole": ("\t", True, ("user_id", "age", "gender", "occupation")),
}
_KINDS = {"user_id": "id", "age": "number", "gender": "text", "occupation": "text"}


@dataclass(frozen=True)
class UserFeatures:
    """Encoded features of every user of a file.

    Attributes:
        path: the file read.
        user_ids: int64 [U], increasing.
        values: float32 [U, F], the encoded features of ``user_ids[i]`` in row i.
        vocabulary: the categories of ``gender`` and ``occupation``, in one-hot order.
        layout: the columns of ``values``, as JSON-friendly records.

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "u.user"
        >>> _ = f.write_text("7|24|M|technician|85711\\n3|53|F|other|94043\\n")
        >>> features = read_user_features(f)
        >>> features.user_ids.tolist(), features.rows_of(np.array([7, 3]), source="doc").tolist()
        ([3, 7], [1, 0])
        >>> [part["name"] for part in features.layout]
        ['age', 'gender', 'occupation']
    """

    path: str
    user_ids: np.ndarray
    values: np.ndarray
    vocabulary: dict[str, list[str]]
    layout: list[dict]

    def rows_of(self, user_ids: np.ndarray, *, source: str) -> np.ndarray:
        """The row of each of ``user_ids`` in ``values``.

        Raises:
            ValueError: a user id that the features file does not have, named with ``source``
                (where the id was found).
        """
        rows = np.searchsorted(self.user_ids, user_ids).clip(max=len(self.user_ids) - 1)
        absent = self.user_ids[rows] != user_ids
        if absent.any():
            missing = np.asarray(user_ids)[absent]
            raise ValueError(
                f"{self.path}: no features for user id {int(missing[0])} ({int(absent.sum())} "
                f"user(s) of {source} have none)"
            )
        return rows


def read_user_features(path: str | os.PathLike) -> UserFeatures:
    """Read and encode a MovieLens users file (see the module docstring).

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "u.user"
        >>> _ = f.write_text("1|24|M|technician|85711\\n2|53|F|other|94043\\n")
        >>> features = read_user_features(f)
        >>> features.vocabulary
        {'gender': ['F', 'M'], 'occupation': ['other', 'technician']}
        >>> [[round(v, 2) for v in row] for row in features.values.tolist()]
        [[0.24, 0.0, 1.0, 0.0, 1.0], [0.53, 1.0, 0.0, 1.0, 0.0]]
    """
    path = Path(path)
    if path.name == "u.user":
        fmt = "ml-100k"
    elif path.name.endswith(".dat"):
        fmt = "ml-1m"
    elif path.suffix == ".user":
        fmt = "recbole"
    else:
        raise ValueError(
            f"{path}: cannot tell the users format from the file name (u.user -> ml-100k, "
            "users.dat -> ml-1m, *.user -> RecBole)"
        )
    sep, header, names = _LAYOUTS[fmt]
    kinds = {name: _KINDS.get(name, "text") for name in names}
    frame = read_table(path, kinds, sep=sep, header=header, allow_extra_columns=False)
    ids = frame["user_id"].to_numpy(dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(np.diff(ids[order]) == 0)
    if repeated.size:
        row = int(order[repeated[0] + 1])
        raise TableError(
            path,
            f"user id {ids[row]} appears twice",
            line=frame.attrs["first_line"] + row,
            column="user_id",
        )
    age = as_float32(
        frame["age"].to_numpy(dtype=np.float64),
        path=path,
        column="age",
        first_line=frame.attrs["first_line"],
    )
    blocks = [(age / np.float32(100.0))[:, None]]
    vocabulary, layout = {}, [{"name": "age", "width": 1, "meaning": "age / 100"}]
    for name in ("gender", "occupation"):
        values = frame[name].to_numpy().astype(str)
        vocabulary[name], index = np.unique(values, return_inverse=True)
        vocabulary[name] = vocabulary[name].tolist()
        blocks.append(np.eye(len(vocabulary[name]), dtype=np.float32)[index])
        layout.append({"name": name, "width": len(vocabulary[name]), "meaning": f"one-hot {name}"})
    values = np.concatenate(blocks, axis=1)[order]
    return UserFeatures(str(path), ids[order], values, vocabulary, layout)
