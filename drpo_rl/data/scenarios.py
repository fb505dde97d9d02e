"""Named mixtures of behaviour agents: the logging scenarios (docs/method.md, "Behaviour
scenarios").

- ``clean``: all expert;
- ``medium``: 10% expert / 60% suboptimal / 30% random;
- ``extreme``: 5% expert / 5% suboptimal / 90% random;
- ``noise-<p>``: p% random injected into expert logs, p an integer from 0 to 80;
- or any ``{agent: weight}`` dict over :data:`drpo_rl.data.behavior.AGENTS`, summing to 1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from drpo_rl.data.behavior import _check_weights

__all__ = ["NAMED_SCENARIOS", "list_scenarios", "noise_level", "scenario_name", "scenario_weights"]

NAMED_SCENARIOS: dict[str, dict[str, float]] = {
    "clean": {"expert": 1.0},
    "medium": {"expert": 0.1, "suboptimal": 0.6, "random": 0.3},
    "extreme": {"expert": 0.05, "suboptimal": 0.05, "random": 0.9},
}
_NOISE = re.compile(r"noise-(\d+)")
_MAX_NOISE = 80


def list_scenarios() -> list[str]:
    """The scenario names :func:`scenario_weights` accepts (``noise-<p>`` as a pattern).

    Examples:
        >>> from drpo_rl.data.scenarios import list_scenarios
        >>> list_scenarios()
        ['clean', 'medium', 'extreme', 'noise-<p> (p = 0..80)']
    """
    return [*NAMED_SCENARIOS, f"noise-<p> (p = 0..{_MAX_NOISE})"]


def scenario_weights(scenario: str | Mapping[str, float]) -> dict[str, float]:
    """The ``{agent name: weight}`` of a scenario name or custom dict; zero weights dropped.

    Raises:
        ValueError: an unknown name (the message lists the valid ones), a noise level
            outside 0..80, or custom weights that are not >= 0 summing to 1 over known agents.

    Examples:
        >>> from drpo_rl.data.scenarios import scenario_weights
        >>> scenario_weights("medium")
        {'expert': 0.1, 'suboptimal': 0.6, 'random': 0.3}
        >>> scenario_weights("noise-30")
        {'expert': 0.7, 'random': 0.3}
        >>> scenario_weights({"expert": 0.5, "anti_oracle": 0.5})
        {'expert': 0.5, 'anti_oracle': 0.5}
    """
    if isinstance(scenario, Mapping):
        weights = _check_weights(scenario)
    elif isinstance(scenario, str):
        weights = _named_weights(scenario)
    else:
        raise ValueError(
            f"scenario: expected a name or an {{agent: weight}} dict, got {scenario!r}"
        )
    return {name: weight for name, weight in weights.items() if weight > 0}


def noise_level(scenario: str) -> int | None:
    """The random-behaviour percentage of a ``noise-<p>`` name (any ``p``), else ``None``.

    Examples:
        >>> from drpo_rl.data.scenarios import noise_level
        >>> noise_level("noise-40"), noise_level("medium")
        (40, None)
    """
    match = _NOISE.fullmatch(scenario)
    return None if match is None else int(match.group(1))


def scenario_name(scenario: str | Mapping[str, float]) -> str:
    """A name to record: the name itself, or ``"custom"`` for a weights dict."""
    return scenario if isinstance(scenario, str) else "custom"


def _named_weights(name: str) -> dict[str, float]:
    if name in NAMED_SCENARIOS:
        return dict(NAMED_SCENARIOS[name])
    percent = noise_level(name)
    if percent is None:
        raise ValueError(f"unknown scenario {name!r}; valid scenarios: {list_scenarios()}")
    if percent > _MAX_NOISE:
        raise ValueError(
            f"scenario {name!r}: the noise level must be an integer percentage from 0 to "
            f"{_MAX_NOISE}, got {percent}"
        )
    # Exact decimal fractions (0.7, not 0.7000000000000001) for readable metadata.
    return {"expert": (100 - percent) / 100, "random": percent / 100}
