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
    # Sessions (multi-step worlds) only:
    "return",
    "return_ci95",
    "length",
    "leave_rate",
    "return_regret",
    "session_diversity",
)
#: The session table's columns: (metric, header, format).
SESSION_COLUMNS = (
    ("return", "return", "{:.2f} ± {:.2f}"),
    ("reward", "reward/step", "{:.3f} ± {:.3f}"),
    ("length", "length", "{:.1f} ± {:.1f}"),
    ("leave_rate", "leave rate", "{:.2f} ± {:.2f}"),
    ("return_regret", "regret vs planner", "{:.2f} ± {:.2f}"),
    ("coverage", "coverage", "{:.2f} ± {:.2f}"),
    ("session_diversity", "ILD", "{:.2f} ± {:.2f}"),
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


def is_session_report(records: Iterable[dict[str, Any]]) -> bool:
    """Whether the runs were evaluated on multi-step sessions (their metrics have a return)."""
    return any("return" in record["metrics"] for record in records)


def with_session_regret(
    records: Sequence[dict[str, Any]], reference: str = "planner"
) -> list[dict[str, Any]]:
    """The records with ``metrics["return_regret"]``: the ``reference`` row's session return
    minus the run's, on the same scenario and seed (so the same evaluation users). Records
    without a session return, or without such a reference run, are left as they are.

    Example:
        >>> recs = [{"scenario": "s", "algorithm": a, "seed": 0, "metrics": {"return": r}}
        ...         for a, r in (("planner", 7.5), ("drpo", 6.0))]
        >>> [r["metrics"].get("return_regret") for r in with_session_regret(recs)]
        [0.0, 1.5]
    """
    best = {
        (r["scenario"], r["seed"]): r["metrics"]["return"]
        for r in records
        if r["algorithm"] == reference and "return" in r["metrics"]
    }
    out = []
    for record in records:
        target = best.get((record["scenario"], record["seed"]))
        if target is not None and "return" in record["metrics"]:
            metrics = {**record["metrics"], "return_regret": target - record["metrics"]["return"]}
            record = {**record, "metrics": metrics}
        out.append(record)
    return out


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
    CSV. For sessions the cells are the session return (the other session metrics are in
    ``results.md``, :func:`session_markdown_table`).
    """
    scenarios, algorithms, references = _order(records)
    sessions = is_session_report(records)
    # Sessions are ranked by what a session earns, not by the reward per step.
    reward = summarise(records, "return" if sessions else "reward")
    best = _best_learners(reward, scenarios, references)
    seeds = max((n for _, _, n in reward.values()), default=0)
    what = "Session return" if sessions else "Online reward"
    table = Table(title=f"{what}, mean ± std over {seeds} seed(s)")

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


def session_markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """The session metrics as Markdown, one row per (scenario, algorithm), mean ± std over
    seeds (:data:`SESSION_COLUMNS`; the best learner's return per scenario in bold).

    Example:
        >>> recs = [{"scenario": "s", "algorithm": "a", "kind": "learner", "seed": 0,
        ...          "metrics": {"return": 6.0, "reward": 0.7, "length": 8.5}}]
        >>> print(session_markdown_table(recs).splitlines()[2])
        | s | a | **6.00 ± 0.00** | 0.700 ± 0.000 | 8.5 ± 0.0 | - | - | - | - |
    """
    scenarios, algorithms, references = _order(records)
    summaries = {metric: summarise(records, metric) for metric, _, _ in SESSION_COLUMNS}
    best = _best_learners(summaries["return"], scenarios, references)
    header = ["scenario", "algorithm", *(title for _, title, _ in SESSION_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(SESSION_COLUMNS)]
    for scenario in scenarios:
        for algorithm in algorithms:
            if (scenario, algorithm) not in summaries["return"]:
                continue
            cells = []
            for metric, _, form in SESSION_COLUMNS:
                stats = summaries[metric].get((scenario, algorithm))
                text = "-" if stats is None else form.format(stats[0], stats[1])
                bold = metric == "return" and best.get(scenario) == algorithm
                cells.append(f"**{text}**" if bold else text)
            name = f"{algorithm} (reference)" if algorithm in references else algorithm
            lines.append("| " + " | ".join([scenario, name, *cells]) + " |")
    return "\n".join(lines)
