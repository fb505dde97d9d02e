"""Argument checks with one message format: ``"<name>: expected <what>, got <value>"``.

Every public function of the suite checks its arguments up front with these, so that a
bad value fails before any work starts, naming the argument and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, TypeVar

T = TypeVar("T")


def is_int(value: object) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """An int or a float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fail(name: str, expected: str, value: object) -> None:
    """Raise the suite's ValueError for argument ``name``."""
    raise ValueError(f"{name}: expected {expected}, got {value!r}")


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    optional: bool = False,
) -> Any:
    """``value`` if it is an integer >= ``minimum`` and <= ``maximum`` (or None when
    ``optional``).

    ``maximum`` bounds a size before anything is allocated from it (a history length of
    10**9 would otherwise try to allocate tens of GB, far from the cause).

    Example:
        >>> check_int("num_envs", 4)
        4
        >>> check_int("num_envs", 0)
        Traceback (most recent call last):
        ...
        ValueError: num_envs: expected an integer >= 1, got 0
        >>> check_int("history_length", True, minimum=0)
        Traceback (most recent call last):
        ...
        ValueError: history_length: expected an integer >= 0, got True
        >>> check_int("history_length", 10**9, minimum=0, maximum=1000)
        Traceback (most recent call last):
        ...
        ValueError: history_length: expected an integer in [0, 1000], got 1000000000
    """
    if optional and value is None:
        return None
    if not (is_int(value) and value >= minimum and (maximum is None or value <= maximum)):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        fail(name, f"an integer {bounds}" + (" or None" if optional else ""), value)
    return value


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
    finite: bool = True,
) -> float:
    """``value`` as a float if it is a real number within the bounds.

    ``strict`` makes the bounds exclusive; ``finite=False`` admits ``math.inf`` (an upper
    bound of "never").

    Example:
        >>> check_number("lr", 3e-4, minimum=0, strict=True)
        0.0003
        >>> check_number("delta", 0.0, minimum=0, strict=True)
        Traceback (most recent call last):
        ...
        ValueError: delta: expected a finite number > 0, got 0.0
        >>> check_number("epsilon", 1.5, minimum=0, maximum=1)
        Traceback (most recent call last):
        ...
        ValueError: epsilon: expected a finite number in [0, 1], got 1.5
    """
    ok = is_real(value) and not math.isnan(value) and (not finite or math.isfinite(value))
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if strict else value <= maximum
    if not ok:
        fail(name, _describe_bounds(minimum, maximum, strict, finite), value)
    return float(value)


def check_choice(name: str, value: T, choices: Collection[T]) -> T:
    """``value`` if it is one of ``choices``.

    Example:
        >>> check_choice("action_type", "slate", ("item", "embedding"))
        Traceback (most recent call last):
        ...
        ValueError: action_type: expected one of ['item', 'embedding'], got 'slate'
    """
    if value not in choices:
        fail(name, f"one of {list(choices)}", value)
    return value


def _describe_bounds(minimum, maximum, strict: bool, finite: bool) -> str:
    kind = "a finite number" if finite else "a number"
    if minimum is not None and maximum is not None:
        left, right = ("(", ")") if strict else ("[", "]")
        return f"{kind} in {left}{_fmt(minimum)}, {_fmt(maximum)}{right}"
    if minimum is not None:
        return f"{kind} {'>' if strict else '>='} {_fmt(minimum)}"
    if maximum is not None:
        return f"{kind} {'<' if strict else '<='} {_fmt(maximum)}"
    return kind


def _fmt(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)
