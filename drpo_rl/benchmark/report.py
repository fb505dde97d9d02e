"""Write and print everything a finished benchmark produced."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from drpo_rl.benchmark.plots import plot_all
from drpo_rl.benchmark.results import (
    is_session_report,
    markdown_table,
    render_table,
    session_markdown_table,
    with_session_regret,
    write_csv,
    write_json,
)
from envs.common.files import write_atomic


def write_report(
    report, *, console: Console | None = None, plots: bool = True, ope=None
) -> list[Path]:
    """Write ``results.csv``, ``results.json``, ``results.md`` and the PNG figures into the
    report's folder, print the table and a summary on ``console``; return the paths written.
    ``ope``: ``(estimator, rows)`` of :func:`~drpo_rl.evaluation.off_policy.benchmark.
    benchmark_ope`, written to ``results_ope.csv`` and printed beside the online table.

    Session reports add each run's regret against the planner (``return_regret``) and
    write the session table (:func:`~drpo_rl.benchmark.results.session_markdown_table`).
    """
    out = report.out_dir
    paths = [out / "results.csv", out / "results.json", out / "results.md"]
    if is_session_report(report.records):
        # The session regret pairs each run with the planner's on the same users.
        report = dataclasses.replace(report, records=with_session_regret(report.records))
        table = session_markdown_table(report.records) + "\n"
    else:
        table = markdown_table(report.records) + "\n"
    write_csv(report.records, paths[0])
    write_json(report, paths[1])
    write_atomic(paths[2], lambda tmp: tmp.write_text(table))
    if plots:
        paths += plot_all(report.records, out)
    if ope is not None:
        from drpo_rl.evaluation.off_policy.benchmark import ope_table, write_ope_csv

        paths.append(write_ope_csv(ope[1], out / "results_ope.csv"))
    if console is not None:
        render_table(report.records, console)
        if ope is not None:
            console.print(ope_table(ope[1], ope[0]))
        console.print(
            f"{len(report.ran)} run(s) done, {len(report.skipped)} skipped (already finished) "
            f"in {report.wall_seconds:.1f} s; device {report.config.device}"
        )
        console.print("wrote " + ", ".join(str(p) for p in paths))
    return paths
