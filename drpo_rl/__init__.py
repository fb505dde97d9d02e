"""drpo-rl: Distributionally Robust Policy Optimization for off-policy recommendation, on TorchRL.

Sub-packages are imported on demand (``drpo_rl.objectives``, ``drpo_rl.data``,
``drpo_rl.models``, ...), so that ``import drpo_rl`` and ``drpo-rl --help`` stay fast.

The distribution has a second top-level package, ``envs`` (the simulated users). A user's
own ``envs`` package or ``envs.py`` module earlier on ``sys.path`` (most often a folder
``./envs`` in the working directory of ``python script.py`` or ``python -m``) would be
imported in its place and fail far from the cause; importing ``drpo_rl`` checks this first
and raises :class:`ShadowedPackageError` saying which file shadows it and what to do.
"""

import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("drpo-rl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["ShadowedPackageError", "__version__", "load_policy"]


def __getattr__(name: str):
    # drpo_rl.load_policy(RUN) without importing torch on ``import drpo_rl``.
    if name == "load_policy":
        from drpo_rl.serving import load_policy

        return load_policy
    raise AttributeError(f"module 'drpo_rl' has no attribute {name!r}")


class ShadowedPackageError(ImportError):
    """``import envs`` would import another package than this distribution's ``envs``.

    Example:
        >>> raise ShadowedPackageError("'import envs' finds ./envs, not drpo-rl's")
        Traceback (most recent call last):
        ...
        drpo_rl.ShadowedPackageError: 'import envs' finds ./envs, not drpo-rl's
    """


def _check_envs_is_ours() -> None:
    expected = Path(__file__).resolve().parent.parent / "envs"
    module = sys.modules.get("envs")
    if module is not None:
        origin = getattr(module, "__file__", None)
    else:
        spec = importlib.util.find_spec("envs")
        origin = None if spec is None else spec.origin
    if origin is None:  # not found at all, or a namespace package: the install is broken
        if (expected / "__init__.py").is_file():
            return  # a namespace portion elsewhere; the real package is found after it
        raise ShadowedPackageError(
            f"drpo-rl's package 'envs' is missing (expected at {expected}); reinstall drpo-rl"
        )
    found = Path(origin).resolve()
    if found == expected / "__init__.py":
        return
    shadow = found.parent if found.name == "__init__.py" else found
    raise ShadowedPackageError(
        f"'import envs' finds {shadow}, not drpo-rl's simulated users at {expected}: a "
        f"package or module of yours named 'envs' comes first on sys.path (for a script or "
        f"'python -m', its folder or the working directory comes first). Rename your "
        f"'envs' (e.g. to 'my_envs'), or run from another folder, or run Python with -P "
        f"(PYTHONSAFEPATH=1: no script folder or working directory first on sys.path)"
    )


_check_envs_is_ours()
