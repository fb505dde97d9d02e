"""Write and print everything a finished benchmark produced."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from drpo_rl.benchmark.plots import plot_all
from drpo_rl.benchmark.results import markdown_table, render_table, write_csv, write_json
from envs.common.files import write_atomic


def write_report(report, *, console: Console | None = None, plots: bool = True) -> list[Path]:
    """Write ``results.csv``, ``results.json``, ``results.md`` and the PNG figures into the
    report's folder, print the table and a summary on ``console``; return the paths written.
    """
    out = report.out_dir
    paths = [out / "results.csv", out / "results.json", out / "results.md"]
    write_csv(report.records, paths[0])
    write_json(report, paths[1])
    table = markdown_table(report.records) + "\n"
    write_atomic(paths[2], lambda tmp: tmp.write_text(table))
    if plots:
        paths += plot_all(report.records, out)
    if console is not None:
        render_table(report.records, console)
        console.print(
            f"{len(report.ran)} run(s) done, {len(report.skipped)} skipped (already finished) "
            f"in {report.wall_seconds:.1f} s; device {report.config.device}"
        )
        console.print("wrote " + ", ".join(str(p) for p in paths))
    return paths
