"""drpo_rl.data: offline logs (generation, behaviour policies, the dataset class, loaders)."""

from drpo_rl.data.dataset import FORMAT_VERSION, OfflineLogs

__all__ = ["FORMAT_VERSION", "OfflineLogs"]
