"""``drpo-rl bench --ope``: each trained run's off-policy estimate beside its online value.

Every run with saved policy weights (the learners, and ``bc-expert``) is reloaded and
estimated with one estimator from the logs of its scenario and seed, the logs it was
trained on: the model-based estimators' reward model is fitted on the same rows, so the
column says how well the logs alone rank the policies, not a held-out test. The oracle and
behaviour rows have no weights (the oracle reads privileged truth the logs do not keep).

Example:
    >>> rows = [{"scenario": "medium", "algorithm": "drpo", "seed": 0, "online": 0.61,
    ...          "ope": 0.6, "low": 0.55, "high": 0.66, "covers": True, "ess": 40.0}]
    >>> ope_table(rows, "dr").columns[3].header
    'online'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table


def benchmark_ope(
    out_dir: Path, records: list[dict[str, Any]], estimator: str, *, num_bootstrap: int = 1000
) -> list[dict[str, Any]]:
    """One row per run with weights: its online value and ``estimator``'s estimate."""
    from drpo_rl.benchmark.policies import load_trained_run
    from drpo_rl.benchmark.store import ResultStore, RunKey
    from drpo_rl.data import OfflineLogs
    from drpo_rl.evaluation.off_policy.evaluate import off_policy_evaluate

    store = ResultStore(out_dir)
    rows = []
    for record in records:
        key = RunKey(record["scenario"], record["algorithm"], record["seed"])
        path = store.path(key)
        if not path.with_suffix(".pt").is_file():
            continue
        run = load_trained_run(path)
        logs = OfflineLogs(store.logs_path(key.scenario, key.seed))
        e = off_policy_evaluate(
            run.policy,
            logs,
            estimators=(estimator,),
            env=run.env_spec,
            num_bootstrap=num_bootstrap,
            seed=key.seed,
        )[estimator]
        online = record["metrics"].get("return", record["metrics"]["reward"])
        rows.append(
            {
                "scenario": key.scenario,
                "algorithm": key.algorithm,
                "seed": key.seed,
                "online": online,
                "ope": e.value,
                "low": e.low,
                "high": e.high,
                "covers": e.covers(online),
                "ess": e.diagnostics.get("ess"),
            }
        )
    return rows


def write_ope_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """:func:`benchmark_ope`'s rows as CSV at ``path`` (atomically); returns ``path``."""
    import csv
    import io

    from envs.common.files import write_atomic

    fields = ["scenario", "algorithm", "seed", "online", "ope", "low", "high", "covers", "ess"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, lambda tmp: tmp.write_text(buffer.getvalue()))
    return path


def ope_table(rows: list[dict[str, Any]], estimator: str) -> Table:
    """The rich table of :func:`benchmark_ope`'s rows."""
    table = Table(title=f"Online value vs off-policy estimate ({estimator}, 95% bootstrap)")
    for header in ("scenario", "algorithm", "seed", "online", estimator, "interval", "ESS"):
        table.add_column(header, justify="left" if header in ("scenario", "algorithm") else "right")
    for row in rows:
        mark = "" if row["covers"] else " [bold]✗[/bold]"
        table.add_row(
            row["scenario"],
            row["algorithm"],
            str(row["seed"]),
            f"{row['online']:.4f}",
            f"{row['ope']:.4f}",
            f"[{row['low']:.4f}, {row['high']:.4f}]{mark}",
            "" if row["ess"] is None else f"{row['ess']:,.0f}",
        )
    return table
