"""The options the ``drpo-rl`` sub-commands share, defined once: one flag vocabulary.

- ``--env NAME`` (default :data:`DEFAULT_ENV` in every sub-command) and ``--env-set
  KEY=VALUE`` (repeatable): the simulated users, as one :class:`envs.EnvSpec`
  (:func:`env_spec`);
- ``--set ALGO.KEY=VALUE`` (repeatable): algorithm hyper-parameters, nothing else;
- ``--device``, ``--seed``, ``--no-progress``.

Every ``KEY=VALUE`` is read by :func:`key_value`: the value as JSON when it parses (a
number, a bool, a list), else the string.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_env_options(parser)
    >>> args = parser.parse_args(["--env-set", "num_items=50", "--env-set", "delta=0.3"])
    >>> args.env, args.env_overrides
    ('RecSimBandit', [('num_items', 50), ('delta', 0.3)])
    >>> key_value("num_items")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected KEY=VALUE (e.g. num_items=500), got 'num_items'
"""

from __future__ import annotations

import argparse
import json
import warnings

# The simulator every sub-command uses unless --env says otherwise.
DEFAULT_ENV = "RecSimBandit"


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE``, the value read as JSON when it parses, else kept as the string.

    Example:
        >>> key_value("num_items=500"), key_value("head=two_tower"), key_value("a=[1, 2]")
        (('num_items', 500), ('head', 'two_tower'), ('a', [1, 2]))
    """
    key, sep, raw = text.partition("=")
    if not (sep and key):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. num_items=500), got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def env_setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of the environment's config (a field name, no dots)."""
    key, value = key_value(text)
    if "." in key:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE of the environment config (e.g. reward_noise=0.3), got "
            f"{text!r}; algorithm hyper-parameters go to --set ALGO.KEY=VALUE"
        )
    return key, value


def hparam(text: str) -> tuple[str, str, object]:
    """``ALGO.KEY=VALUE``: an algorithm's hyper-parameter.

    Example:
        >>> hparam("drpo.kappa=0.3")
        ('drpo', 'kappa', 0.3)
    """
    target, value = key_value(text)
    algorithm, dot, key = target.partition(".")
    if not (dot and algorithm and key):
        raise argparse.ArgumentTypeError(
            f"expected ALGO.KEY=VALUE (e.g. drpo.kappa=0.3), got {text!r}"
        )
    return algorithm, key, value


class DeprecatedEnvSet(argparse.Action):
    """An old spelling of ``--env-set`` kept for one release: warns, then does the same.

    Example:
        >>> import warnings
        >>> parser = argparse.ArgumentParser(prog="drpo-rl generate")
        >>> add_env_options(parser)
        >>> _ = parser.add_argument("--set", action=DeprecatedEnvSet, type=env_setting)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     args = parser.parse_args(["--set", "num_items=5", "--env-set", "delta=0.3"])
        >>> args.env_overrides, caught[0].category.__name__
        ([('num_items', 5), ('delta', 0.3)], 'FutureWarning')
    """

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warnings.warn(
            f"{parser.prog}: {option_string} KEY=VALUE for env config overrides is deprecated "
            "and will be removed in the next release; use --env-set KEY=VALUE",
            FutureWarning,
            stacklevel=2,
        )
        namespace.env_overrides = [*(namespace.env_overrides or []), values]


def add_env_options(parser: argparse.ArgumentParser, *, env_help: str = "") -> None:
    """``--env NAME`` and the repeatable ``--env-set KEY=VALUE`` (into ``env_overrides``)."""
    parser.add_argument(
        "--env",
        default=DEFAULT_ENV,
        metavar="NAME",
        help=f"an env of envs.list_envs() (default: {DEFAULT_ENV}){env_help}",
    )
    parser.add_argument(
        "--env-set",
        dest="env_overrides",
        action="append",
        type=env_setting,
        default=[],
        metavar="KEY=VALUE",
        help="environment config override, repeatable (e.g. --env-set reward_noise=0.3 "
        "--env-set num_items=1000)",
    )


def add_hparams(parser: argparse.ArgumentParser) -> None:
    """The repeatable ``--set ALGO.KEY=VALUE`` (into ``hparams``)."""
    parser.add_argument(
        "--set",
        dest="hparams",
        action="append",
        type=hparam,
        default=[],
        metavar="ALGO.KEY=VALUE",
        help="algorithm hyper-parameter, repeatable (e.g. --set drpo.kappa=0.3)",
    )


def add_device(parser: argparse.ArgumentParser, *, default: str | None = "cpu") -> None:
    suffix = "" if default is None else f" (default: {default})"
    parser.add_argument("--device", default=default, help=f"cpu or cuda[:index]{suffix}")


def add_seed(parser: argparse.ArgumentParser, *, default: int | None, help: str) -> None:
    parser.add_argument("--seed", type=int, default=default, help=help)


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def env_spec(args: argparse.Namespace):
    """The :class:`envs.EnvSpec` of ``--env`` and ``--env-set`` (``ValueError`` if invalid)."""
    from envs import EnvSpec

    try:
        return EnvSpec(args.env, dict(args.env_overrides))
    except ValueError as error:
        raise ValueError(f"--env {args.env} / --env-set: {error}") from error
