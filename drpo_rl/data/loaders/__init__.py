"""Loaders of real interaction logs into the suite's offline-logs format.

Each format has a pure ``parse_*`` function (file -> :class:`ParsedLogs`: a TensorDict plus
JSON metadata, nothing written) and a ``load_*`` function that stores the parsed logs as an
:class:`~drpo_rl.data.OfflineLogs` folder (re-opened without parsing next time). Keys follow
the generated logs: ``"observation"``, ``"action"`` (item index), ``("next", "reward")`` in
[0, 1], ``("next", "done")``..., and ``"behavior_log_prob"`` where the data has a propensity.
Malformed files raise :class:`envs.common.tables.TableError` naming the file, line and column.

- :mod:`~drpo_rl.data.loaders.movielens`: MovieLens ``u.data`` / ``ratings.dat``, RecBole
  ``.inter``, ratings ``.csv``.
- :mod:`~drpo_rl.data.loaders.kuai`: KuaiRand logs, KuaiRec matrices.
- :mod:`~drpo_rl.data.loaders.obd`: the Open Bandit Dataset (with propensities).
- :mod:`~drpo_rl.data.loaders.interactions`: any log of (user, item, reward[, propensity],
  time[, session]) rows, CSV, Parquet, JSON lines or a DataFrame, streamed in chunks.
"""

from drpo_rl.data.loaders.interactions import load_interactions
from drpo_rl.data.loaders.kuai import (
    KUAIRAND_SIGNALS,
    load_kuairand,
    load_kuairec,
    parse_kuairand,
    parse_kuairec,
)
from drpo_rl.data.loaders.movielens import load_movielens, parse_movielens, recbole_ml100k_path
from drpo_rl.data.loaders.obd import load_obd, obd_sample_path, parse_obd
from drpo_rl.data.loaders.store import ParsedLogs
from envs.common.tables import TableError

__all__ = [
    "KUAIRAND_SIGNALS",
    "ParsedLogs",
    "TableError",
    "load_interactions",
    "load_kuairand",
    "load_kuairec",
    "load_movielens",
    "load_obd",
    "obd_sample_path",
    "parse_kuairand",
    "parse_kuairec",
    "parse_movielens",
    "parse_obd",
    "recbole_ml100k_path",
]
