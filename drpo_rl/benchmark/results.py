"""Benchmark results: per-run CSV and JSON, the mean +/- std summary, and its tables.

The summary aggregates over seeds (mean and sample standard deviation) per scenario and
algorithm; it is printed as a rich table in the terminal and written as Markdown
(``results.md``) for reports.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from drpo_rl.benchmark.store import write_json_atomic
from envs.common.files import write_atomic

RUN_COLUMNS = ("scenario", "algorithm", "seed", "kind")
METRIC_COLUMNS = (
    "reward",
    "reward_ci95",
    "ecpm",
    "latent_reward",
    "regret",
    "hit_rate",
    "coverage",
    "diversity",
    "num_users",
)
TIMING_COLUMNS = ("train_seconds", "eval_seconds", "train_rows")


def flat_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat dict per run: grid coordinates, final metrics, timings.

    Example:
        >>> rec = {"scenario": "medium", "algorithm": "bc", "seed": 0, "kind": "learner",
        ...        "metrics": {"reward": 0.5, "ecpm": 2.5}, "train_seconds": 1.0}
        >>> flat_rows([rec])[0]["ecpm"], flat_rows([rec])[0]["regret"]
        (2.5, '')
    """
    rows = []
    for record in records:
        row = {c: record.get(c, "") for c in RUN_COLUMNS}
        row.update({c: record["metrics"].get(c, "") for c in METRIC_COLUMNS})
        row.update({c: record.get(c, "") for c in TIMING_COLUMNS})
        rows.append(row)
    return rows


def write_csv(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Every run's final metrics as CSV (atomically, like every output)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*RUN_COLUMNS, *METRIC_COLUMNS, *TIMING_COLUMNS])
    writer.writeheader()
    writer.writerows(flat_rows(records))
    text = buffer.getvalue()
    write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json(report: Any, path: Path) -> None:
    """The config, wall time, skipped runs and every full run record (curves included)."""
    write_json_atomic(
        path,
        {
            "config": report.config.to_dict(),
            "wall_seconds": report.wall_seconds,
            "ran": [str(k) for k in report.ran],
            "skipped": [str(k) for k in report.skipped],
            "runs": report.records,
        },
    )


def summarise(
    records: Iterable[dict[str, Any]], metric: str = "reward"
) -> dict[tuple[str, str], tuple[float, float, int]]:
    """``{(scenario, algorithm): (mean, std, n_seeds)}`` of a final metric (std 0 for n=1).

    Example:
        >>> recs = [{"scenario": "s", "algorithm": "a", "metrics": {"reward": r}}
        ...         for r in (1.0, 3.0)]
        >>> summarise(recs)[("s", "a")]
        (2.0, 1.4142135623730951, 2)
    """
    groups: dict[tuple[str, str], list[float]] = {}
    for record in records:
        value = record["metrics"].get(metric)
        if value is not None:
            groups.setdefault((record["scenario"], record["algorithm"]), []).append(float(value))
    return {
        key: (
            statistics.fmean(values),
            statistics.stdev(values) if len(values) > 1 else 0.0,
            len(values),
        )
        for key, values in groups.items()
    }


def _cell(stats: tuple[float, float, int] | None) -> str:
    if stats is None or math.isnan(stats[0]):
        return "-"
    mean, std, _ = stats
    return f"{mean:.3f} ± {std:.3f}"


def _order(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], set[str]]:
    scenarios, algorithms, references = [], [], set()
    for record in records:
        if record["scenario"] not in scenarios:
            scenarios.append(record["scenario"])
        if record["algorithm"] not in algorithms:
            algorithms.append(record["algorithm"])
        if record.get("kind") == "reference":
            references.add(record["algorithm"])
    return scenarios, algorithms, references


def _best_learners(
    summary: dict[tuple[str, str], tuple[float, float, int]],
    scenarios: list[str],
    references: set[str],
) -> dict[str, str]:
    best = {}
    for scenario in scenarios:
        learners = {
            a: s for (sc, a), s in summary.items() if sc == scenario and a not in references
        }
        if learners:
            best[scenario] = max(learners, key=lambda a: learners[a][0])
    return best


# Beyond this many scenarios the terminal table lists (scenario, algorithm) rows instead
# of one column per scenario, which would not fit a terminal (e.g. the noise sweep).
WIDE_TABLE_MAX_SCENARIOS = 3


def render_table(records: Sequence[dict[str, Any]], console: Console | None = None) -> Table:
    """Print (and return) the rich table of the final online reward, mean ± std over seeds.

    Up to :data:`WIDE_TABLE_MAX_SCENARIOS` scenarios: one row per algorithm, one column per
    scenario; more: one row per (scenario, algorithm). The best learner of each scenario is
    in bold; reference rows are dimmed. eCPM (price x reward) is in ``results.md`` and the
    CSV.
    """
    scenarios, algorithms, references = _order(records)
    reward = summarise(records, "reward")
    best = _best_learners(reward, scenarios, references)
    seeds = max((n for _, _, n in reward.values()), default=0)
    table = Table(title=f"Online reward, mean ± std over {seeds} seed(s)")

    def name(algorithm: str) -> str:
        return f"[dim]{algorithm} (ref)[/dim]" if algorithm in references else algorithm

    def cell(scenario: str, algorithm: str) -> str:
        text = _cell(reward.get((scenario, algorithm)))
        return f"[bold]{text}[/bold]" if best.get(scenario) == algorithm else text

    if len(scenarios) <= WIDE_TABLE_MAX_SCENARIOS:
        table.add_column("algorithm")
        for scenario in scenarios:
            table.add_column(scenario, justify="right")
        for algorithm in algorithms:
            table.add_row(name(algorithm), *(cell(s, algorithm) for s in scenarios))
    else:
        table.add_column("scenario")
        table.add_column("algorithm")
        table.add_column("reward", justify="right")
        for scenario in scenarios:
            for algorithm in algorithms:
                if (scenario, algorithm) in reward:
                    table.add_row(scenario, name(algorithm), cell(scenario, algorithm))
            table.add_section()
    if console is not None:
        console.print(table)
    return table


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """The same table as Markdown (best learner per scenario in bold).

    Example:
        >>> recs = [{"scenario": "s", "algorithm": "a", "kind": "learner",
        ...          "seed": 0, "metrics": {"reward": 0.5, "ecpm": 2.5}}]
        >>> print(markdown_table(recs))
        | algorithm | s reward | s eCPM |
        |---|---:|---:|
        | a | **0.500 ± 0.000** | **2.500 ± 0.000** |
    """
    scenarios, algorithms, references = _order(records)
    reward, ecpm = summarise(records, "reward"), summarise(records, "ecpm")
    best = _best_learners(reward, scenarios, references)
    header = ["algorithm"] + [f"{s} {m}" for s in scenarios for m in ("reward", "eCPM")]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for algorithm in algorithms:
        cells = []
        for scenario in scenarios:
            for summary in (reward, ecpm):
                text = _cell(summary.get((scenario, algorithm)))
                cells.append(f"**{text}**" if best.get(scenario) == algorithm else text)
        name = f"{algorithm} (reference)" if algorithm in references else algorithm
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)
