"""drpo-rl: Distributionally Robust Policy Optimization for off-policy recommendation, on TorchRL.

Sub-packages are imported on demand (``drpo_rl.objectives``, ``drpo_rl.data``,
``drpo_rl.models``, ...), so that ``import drpo_rl`` and ``drpo-rl --help`` stay fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("drpo-rl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
