"""The picture of a session that `SimulatedUsersGymEnv.render()` returns for "rgb_array"."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Items drawn as the catalogue's background (a large catalogue is subsampled).
BACKGROUND_ITEMS = 2000


class SessionPicture:
    """Draws one user's session on the catalogue's two principal directions: the items
    (grey), the user's interest (green star), the recent items (blue, numbered from the
    oldest) and the item just recommended (red), with the session's numbers as title.

    Matplotlib's Agg canvas, no window: the frame is uint8 [H, W, 3].

    Example:
        >>> import torch
        >>> picture = SessionPicture(torch.randn(50, 4), size=(2.0, 2.0), dpi=50)
        >>> frame = picture.draw(torch.randn(4), [3, 7], "step 2")
        >>> frame.shape, frame.dtype
        ((100, 100, 3), dtype('uint8'))
    """

    def __init__(
        self, embeddings: torch.Tensor, *, size: tuple[float, float] = (5.0, 5.0), dpi: int = 80
    ) -> None:
        embeddings = embeddings.detach().cpu().float()
        # The two principal directions of (a fixed subsample of) the catalogue.
        generator = torch.Generator().manual_seed(0)
        n = embeddings.shape[0]
        shown = (
            torch.randperm(n, generator=generator)[:BACKGROUND_ITEMS]
            if n > BACKGROUND_ITEMS
            else None
        )
        sample = embeddings if shown is None else embeddings[shown]
        self._mean = sample.mean(0)
        _, _, vh = torch.linalg.svd(sample - self._mean, full_matrices=False)
        self._axes = vh[:2].T  # [d, 2]; d == 1 draws on one axis
        self._embeddings = embeddings
        self._background = self._project(sample)
        self._scale = float(np.abs(self._background).max()) or 1.0
        self._size, self._dpi = size, dpi

    def _project(self, points: torch.Tensor) -> np.ndarray:
        xy = ((points - self._mean) @ self._axes).numpy()
        return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))

    def draw(self, preference: torch.Tensor, recent: list[int], title: str) -> np.ndarray:
        """The frame for a user of interest `preference` [d] shown `recent` (oldest first)."""
        figure = Figure(figsize=self._size, dpi=self._dpi)
        canvas = FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        ax.scatter(*self._background.T, s=4, c="0.8", label="items")
        # The interest is a direction: drawn at the catalogue's scale.
        interest = preference.detach().cpu().float()
        direction = self._project((self._mean + interest).unsqueeze(0))[0]
        norm = float(np.linalg.norm(direction)) or 1.0
        ax.scatter(
            *(direction * self._scale / norm),
            s=220,
            marker="*",
            c="tab:green",
            label="user's interest",
        )
        if recent:
            xy = self._project(self._embeddings[torch.tensor(recent)])
            ax.plot(*xy.T, "-o", c="tab:blue", ms=5, lw=1, label="recent items")
            for k, (x, y) in enumerate(xy):
                ax.annotate(
                    str(recent[k]),
                    (x, y),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                    color="tab:blue",
                )
            ax.scatter(*xy[-1], s=120, c="tab:red", label="recommended", zorder=3)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="lower right", fontsize=6)
        figure.tight_layout()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
