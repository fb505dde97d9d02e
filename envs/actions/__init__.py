"""Action kinds: how an action shows items to users (`ActionKind`), one file per kind.

An env's config names its kind (`action_type`); `kind(name)` returns it. A new kind (a
slate of k items, say) is one file with an `ActionKind` subclass and one `register` call.

Example:
    >>> from envs import actions
    >>> sorted(actions.names())
    ['embedding', 'item']
    >>> actions.kind("slate")
    Traceback (most recent call last):
    ...
    ValueError: action_type: expected one of ['item', 'embedding'], got 'slate'
"""

from __future__ import annotations

from envs.actions.base import ActionKind
from envs.actions.embedding import EmbeddingAction
from envs.actions.item import ItemAction
from envs.common.checks import check_choice

_KINDS: dict[str, ActionKind] = {}


def register(kind: ActionKind) -> ActionKind:
    """Make `kind` selectable as `action_type=kind.name` (idempotent for the same kind)."""
    if not isinstance(kind, ActionKind) or not kind.name:
        raise ValueError(f"kind: expected an ActionKind instance with a name, got {kind!r}")
    _KINDS[kind.name] = kind
    return kind


def names() -> list[str]:
    """The registered `action_type` values."""
    return list(_KINDS)


def kind(name: str) -> ActionKind:
    """The action kind called `name` (ValueError listing the valid ones)."""
    return _KINDS[check_choice("action_type", name, names())]


register(ItemAction())
register(EmbeddingAction())

__all__ = ["ActionKind", "EmbeddingAction", "ItemAction", "kind", "names", "register"]
