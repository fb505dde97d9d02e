"""Off-policy estimates as a rich table, CSV rows and JSON.

Example:
    >>> from drpo_rl.evaluation.off_policy.evaluate import OffPolicyEstimate
    >>> e = OffPolicyEstimate("snips", 0.5, 0.4, 0.6, 0.05, "bootstrap", 0.05,
    ...                       {"ess": 120.0, "max_weight": 9.5})
    >>> row = csv_rows({"snips": e})[0]
    >>> row["estimator"], row["value"], row["ess"]
    ('snips', 0.5, 120.0)
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from envs.common.files import write_atomic

#: Diagnostics shown in the terminal table, with their headers (all go to CSV and JSON).
SHOWN = {
    "ess": "ESS",
    "max_weight": "max w",
    "clipped_share": "clipped",
    "reward_model_rmse": "model RMSE",
}


def csv_rows(estimates: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One flat row per estimator: its fields, then every diagnostic."""
    rows = []
    for e in estimates.values():
        record = e.to_dict()
        diagnostics = record.pop("diagnostics")
        rows.append({**record, **diagnostics})
    return rows


def estimates_table(estimates: Mapping[str, Any], *, title: str, truth: float | None = None):
    """A rich table: value and interval per estimator (and whether it covers ``truth``)."""
    first = next(iter(estimates.values()))
    level = f"{100 * (1 - first.alpha):.0f}% {first.interval} intervals"
    table = Table(title=f"{title}\n{level}")
    # The estimator's name is never cut, however narrow the terminal.
    table.add_column("estimator", no_wrap=True, min_width=len("clipped-ips"))
    for header in ("value", "low", "high", *SHOWN.values()):
        table.add_column(header, justify="right")
    if truth is not None:
        table.add_column("covers online")
    for e in estimates.values():
        cells = [e.estimator, f"{e.value:.4f}", f"{e.low:.4f}", f"{e.high:.4f}"]
        for name in SHOWN:
            value = e.diagnostics.get(name)
            cells.append("" if value is None else f"{value:,.3g}")
        if truth is not None:
            cells.append("yes" if e.covers(truth) else "[bold]no[/bold]")
        table.add_row(*cells)
    return table


def write_estimates(
    estimates: Mapping[str, Any], *, json_path: Path | None, csv_path: Path | None, **context
) -> list[Path]:
    """Write the estimates (with ``context``: run, logs, online value...) as JSON and/or CSV."""
    written = []
    if json_path is not None:
        document = {**context, "estimates": {k: e.to_dict() for k, e in estimates.items()}}
        text = json.dumps(document, indent=1, default=str)
        write_atomic(json_path, lambda tmp: tmp.write_text(text + "\n"))
        written.append(json_path)
    if csv_path is not None:
        rows = csv_rows(estimates)
        fields = list(dict.fromkeys(key for row in rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(csv_path, lambda tmp: tmp.write_text(buffer.getvalue()))
        written.append(csv_path)
    return written
