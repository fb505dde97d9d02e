"""PNG figures of a benchmark: final reward, learning curves, noise sweep, phantom gradients.

Figures are drawn with matplotlib's object API (``Figure`` + ``savefig``), which needs no
GUI backend and leaves the caller's pyplot state alone. Each file is written atomically
(:func:`envs.common.files.write_atomic`): an interrupted run leaves the previous figure or
none, never a truncated one. Each function returns the path it wrote, or ``None`` when the
records hold nothing to draw (e.g. no ``noise-<p>`` scenarios).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from drpo_rl.benchmark.references import ORACLE, REFERENCES
from drpo_rl.benchmark.results import summarise
from drpo_rl.data.scenarios import noise_level
from envs.common.files import write_atomic


def _save(fig: Figure, path: Path, *, dpi: int) -> None:
    # Atomically: an interrupted write must not leave a truncated image under `path`. The
    # format comes from `path`, not from the temporary file's name.
    fmt = Path(path).suffix.removeprefix(".") or "png"
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt))


def _ordered(values) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def plot_rewards(records: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Grouped bars: final online reward per algorithm (x) and scenario (colour), +/- std."""
    if not records:
        return None
    summary = summarise(records, "reward")
    scenarios = _ordered(r["scenario"] for r in records)
    algorithms = _ordered(r["algorithm"] for r in records)
    references = {r["algorithm"] for r in records if r.get("kind") == "reference"}
    fig = Figure(figsize=(max(6.0, 0.7 * len(algorithms) * max(1, len(scenarios)) / 1.5), 4.2))
    ax = fig.subplots()
    width = 0.8 / len(scenarios)
    for i, scenario in enumerate(scenarios):
        means = [summary.get((scenario, a), (float("nan"), 0.0, 0))[0] for a in algorithms]
        stds = [summary.get((scenario, a), (0.0, 0.0, 0))[1] for a in algorithms]
        xs = [j + (i - (len(scenarios) - 1) / 2) * width for j in range(len(algorithms))]
        bars = ax.bar(xs, means, width, yerr=stds, capsize=2, label=scenario)
        for bar, algorithm in zip(bars, algorithms, strict=True):
            if algorithm in references:
                bar.set_hatch("//")
    ax.set_xticks(range(len(algorithms)))
    ax.set_xticklabels(
        [f"{a}\n(ref)" if a in references else a for a in algorithms], rotation=45, ha="right"
    )
    ax.set_ylabel("online reward (mean ± std over seeds)")
    ax.set_title("Final online reward per algorithm and scenario (hatched: reference rows)")
    ax.legend(title="scenario")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path, dpi=120)
    return path


def _mean_curves(
    records: Sequence[dict[str, Any]], field: str, value: str
) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    """``{(scenario, algorithm): (steps, mean over seeds)}`` of a per-step ``value``."""
    points: dict[tuple[str, str], dict[int, list[float]]] = {}
    for record in records:
        for point in record.get(field) or []:
            if value in point:
                key = (record["scenario"], record["algorithm"])
                points.setdefault(key, {}).setdefault(point["step"], []).append(point[value])
    return {
        key: (sorted(by_step), [statistics.fmean(by_step[s]) for s in sorted(by_step)])
        for key, by_step in points.items()
    }


def plot_learning_curves(records: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Online reward along training, one panel per scenario, mean over seeds."""
    curves = _mean_curves(records, "curve", "eval_reward")
    if not curves:
        return None
    scenarios = _ordered(s for s, _ in curves)
    oracle = summarise([r for r in records if r["algorithm"] == ORACLE], "reward")
    fig = Figure(figsize=(5.0 * len(scenarios), 4.0))
    axes = fig.subplots(1, len(scenarios), squeeze=False)[0]
    for ax, scenario in zip(axes, scenarios, strict=True):
        for (sc, algorithm), (steps, values) in curves.items():
            if sc == scenario:
                ax.plot(steps, values, marker="o", markersize=3, label=algorithm)
        if (scenario, ORACLE) in oracle:
            ax.axhline(oracle[(scenario, ORACLE)][0], color="k", ls="--", lw=1, label=ORACLE)
        ax.set_title(scenario)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("online reward")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small", ncol=2)
    fig.suptitle("Learning curves (mean over seeds)")
    fig.tight_layout()
    _save(fig, path, dpi=120)
    return path


def plot_noise_sweep(records: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Final reward against the share of random behaviour injected (``noise-<p>``)."""
    noisy = [r for r in records if noise_level(r["scenario"]) is not None]
    if len({r["scenario"] for r in noisy}) < 2:
        return None
    summary = summarise(noisy, "reward")
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for algorithm in _ordered(r["algorithm"] for r in noisy):
        cells = sorted(
            (noise_level(sc), stats) for (sc, a), stats in summary.items() if a == algorithm
        )
        xs = [x for x, _ in cells]
        means = [s[0] for _, s in cells]
        stds = [s[1] for _, s in cells]
        style = "--" if algorithm in REFERENCES else "-"
        (line,) = ax.plot(xs, means, style, marker="o", markersize=3, label=algorithm)
        ax.fill_between(
            xs,
            [m - s for m, s in zip(means, stds, strict=True)],
            [m + s for m, s in zip(means, stds, strict=True)],
            color=line.get_color(),
            alpha=0.15,
        )
    ax.set_xlabel("random behaviour injected into expert logs (%)")
    ax.set_ylabel("online reward (mean ± std over seeds)")
    ax.set_title("Noise sweep")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    _save(fig, path, dpi=120)
    return path


# Panels of the phantom-gradient figure: title and the monitor entries drawn in it (a
# "_neg"/"_pos" pair is drawn dashed/solid). Entries the records lack are left out.
PHANTOM_PANELS = (
    ("gradient norm, mean branch (mu)", ("grad_loc_neg", "grad_loc_pos")),
    ("gradient norm, log-std branch", ("grad_log_scale_neg", "grad_log_scale_pos")),
    ("gradient norm, logits", ("grad_logits_neg", "grad_logits_pos")),
    ("gradient norm, all actor parameters", ("grad_params_neg", "grad_params_pos")),
    ("distance |mu(s) - logged action|", ("mu_action_distance",)),
    ("sigma (mean)", ("scale_mean",)),
    ("share of negative-weight samples", ("frac_negative",)),
)


def plot_phantom_monitor(
    records: Sequence[dict[str, Any]], path: Path, algorithms: Sequence[str] = ("apg", "drpo")
) -> Path | None:
    """The phantom-gradient monitor along training, APG against DRPO (mean over seeds).

    Gradient panels draw the part from negative-weight (repulsive) samples dashed and the
    part from positive-weight samples solid; one colour per (algorithm, scenario).
    """
    chosen = [r for r in records if r["algorithm"] in algorithms and r.get("monitor")]
    if not chosen:
        return None
    present = {k for r in chosen for point in r["monitor"] for k in point}
    panels = [(t, [k for k in keys if k in present]) for t, keys in PHANTOM_PANELS]
    panels = [(t, keys) for t, keys in panels if keys]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.8 * cols, 3.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    series = _ordered((r["scenario"], r["algorithm"]) for r in chosen)
    colours = {s: f"C{i}" for i, s in enumerate(series)}
    for ax, (title, quantities) in zip(axes, panels, strict=False):
        values_seen = []
        for quantity in quantities:
            for (scenario, algorithm), (steps, values) in _mean_curves(
                chosen, "monitor", quantity
            ).items():
                negative = quantity.endswith("_neg")
                ax.plot(
                    steps,
                    values,
                    "--" if negative else "-",
                    marker="o",
                    markersize=3,
                    color=colours[(scenario, algorithm)],
                    # One legend entry per colour; the line style is told in the title.
                    label="_nolegend_" if negative else f"{algorithm}, {scenario}",
                )
                values_seen += values
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("gradient steps")
        if _spans_decades(values_seen):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Phantom-gradient monitor: "
        + " vs ".join(a.upper() for a in algorithms)
        + " (dashed: repulsive part from negative-weight samples)"
    )
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return path


def _spans_decades(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and bool(positive) and max(positive) > 100 * min(positive)


def plot_all(records: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Every figure the records allow, written into ``out_dir``; returns the paths."""
    figures = [
        plot_rewards(records, out_dir / "reward.png"),
        plot_learning_curves(records, out_dir / "learning_curves.png"),
        plot_noise_sweep(records, out_dir / "noise_sweep.png"),
        plot_phantom_monitor(records, out_dir / "phantom_gradients.png"),
    ]
    return [p for p in figures if p is not None]
