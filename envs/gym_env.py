"""Gymnasium face of the suite for one user: the batched core with a batch of one."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.factory import make_env
from envs.simulator import SimulatedUsersEnv

#: How many of the most recent items `render()` shows.
RECENT_ITEMS = 5


def single_spaces(core: SimulatedUsersEnv) -> tuple[spaces.Space, spaces.Space]:
    """(observation space, action space) of one user of `core`, from the core's specs
    (the same bounds on both faces)."""
    spec = core.observation_spec["observation"]
    low, high = (bound[0].cpu().numpy() for bound in (spec.space.low, spec.space.high))
    observation_space = spaces.Box(low, high, dtype=np.float32)
    return observation_space, core.action_kind.space(core)


def check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> str | None:
    """`render_mode`, if None or one of `metadata["render_modes"]`; else Gymnasium's
    `UnsupportedMode` naming the supported ones."""
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise gym.error.UnsupportedMode(
            f"render_mode: expected None or one of {metadata['render_modes']}, got {render_mode!r}"
        )
    return render_mode


def privileged_info(core: SimulatedUsersEnv, row: slice | int) -> dict[str, Any]:
    """The privileged entries of the current users that `core` was asked for
    (`privileged=`), for Gymnasium's info ("latent_reward" is added by the steps)."""
    info: dict[str, Any] = {}
    if "oracle" in core.privileged:
        best = core.oracle()
        # Copies: the oracle is cached while the users stay, and Gymnasium's users keep infos.
        info["oracle_item"] = best["item"][row].cpu().numpy().copy()
        info["oracle_reward"] = best["reward"][row].cpu().numpy().copy()
    if "item_rewards" in core.privileged:
        info["item_rewards"] = core.reward_table()[row].cpu().numpy()
    return info


class SimulatedUsersGymEnv(gym.Env):
    """One simulated user as a `gymnasium.Env`, adapting the batched TorchRL core.

    ## Description

    Registered as `drpo_rl/<name>-v0` for every env of `envs.list_envs()`: a recommender
    shows one catalogue item per step to a simulated user, who rewards it (docs/method.md,
    section 6) and, in sessions, drifts, tires and eventually leaves. The dynamics, spaces
    and rewards are those of the batched env of the same name (see its docstring), with
    numpy in and out; the core runs as a batch of one through its own rules, without
    TorchRL's per-step machinery (which costs more than a one-user step).

    ## Action Space

    That of the env's action kind (`env.unwrapped.core.action_kind`): `Discrete(num_items)`
    for item ids, or `Box(-1, 1, (embedding_dim,))` for an embedding, decoded to the item
    of highest cosine similarity (larger actions are accepted: only the direction counts).

    ## Observation Space

    | Part              | Size   | Bounds                                            |
    |-------------------|--------|---------------------------------------------------|
    | noisy preference  | d      | [-1, 1] without observation noise, else unbounded |
    | recent items      | K * d  | the catalogue's range (zeros for empty slots)     |
    | their rewards     | K      | [0, 1]                                            |
    | step / max_length | 1      | [0, 1] (sessions only)                            |

    ## Rewards

    The user's observed reward of the item shown, in [0, 1].

    ## Starting State

    A new user drawn from the population; `reset(seed=s)` seeds the core's generator, so
    the same seed and actions give exactly the observations and rewards of
    `make_env(name, num_envs=1, seed=s)`.

    ## Episode End

    The episode terminates when the user leaves (always after one step for the bandits;
    patience run out for sessions) and is truncated when a session reaches `max_length`
    items; stepping after the end without `reset()` raises `gymnasium.error.ResetNeeded`.

    ## Arguments

    | Argument      | Default | Meaning                                                     |
    |---------------|---------|-------------------------------------------------------------|
    | `render_mode` | None    | "rgb_array" (a picture of the session) or "ansi" (one line) |
    | `privileged`  | ()      | adds privileged truth to `info` (below)                     |
    | `**overrides` |         | fields of the env's config (`num_items`, `max_length`, ...) |

    `info` holds "item" (np.int64, the item shown; -1 after reset); with
    `privileged=("latent_reward",)` also "latent_reward" (its noiseless reward, 0 after
    reset), with `("oracle",)` "oracle_item" and "oracle_reward", with `("item_rewards",)`
    the full table [N]: the same keys after reset and step, as the core's outputs.

    ## Vectorized environment

    `gymnasium.make_vec(id, num_envs, vectorization_mode="vector_entry_point")` runs all
    users in one batched core (`SimulatedUsersVectorEnv`).

    ## Version History

    * v0: initial version.

    Example:
        >>> import gymnasium as gym
        >>> import envs
        >>> env = gym.make("drpo_rl/RecSimBanditDiscrete-v0", num_items=10,
        ...                privileged=("oracle",), render_mode="ansi")
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, int(info["oracle_item"]) in range(10)
        ((16,), True)
        >>> obs, reward, terminated, truncated, info = env.step(3)
        >>> int(info["item"]), terminated, truncated, 0.0 <= reward <= 1.0
        (3, True, False, True)
        >>> env.render()  # doctest: +ELLIPSIS
        'step 1 | item 3 | reward ... | return ... | recent [3]'
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    def __init__(
        self,
        name: str = "RecSimBandit",
        render_mode: str | None = None,
        privileged: tuple[str, ...] = (),
        **overrides,
    ):
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.core = make_env(name, num_envs=1, device="cpu", privileged=privileged, **overrides)
        self.observation_space, self.action_space = single_spaces(self.core)
        self._latent_in_info = "latent_reward" in self.core.privileged
        # Python values only: the hot path pays no tensor op for its checks and bookkeeping.
        self._started = False
        self._ended = False
        self._steps, self._return, self._last = 0, 0.0, None
        self._recent: deque[int] = deque(maxlen=RECENT_ITEMS)
        self._picture = None  # the renderer, made at the first rgb_array frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.core.set_seed(seed)
        self.core._arrive()
        self._started, self._ended = True, False
        self._steps, self._return, self._last = 0, 0.0, None
        self._recent.clear()
        # The step's keys too, as the core's reset gives them: no item shown yet.
        info = {"item": np.int64(-1)}
        if self._latent_in_info:
            info["latent_reward"] = np.float32(0.0)
        info |= privileged_info(self.core, 0)
        return self.core._observation()[0].numpy(), info

    def step(self, action):
        if self._ended or not self._started:
            raise gym.error.ResetNeeded(
                "call reset() before step()"
                if not self._started
                else "the episode has ended: call reset() before step()"
            )
        item = self.core.action_kind.decode_numpy(action, (), self.core)
        reward, latent, left, capped = self.core._show(item)
        shown, reward = item.item(), reward.item()
        terminated, truncated = left.item(), capped.item()
        self._ended = terminated or truncated
        self._steps += 1
        self._return += reward
        self._last = (shown, reward)
        self._recent.append(shown)
        # numpy scalars, which TorchRL's info readers and Gymnasium's vector infos batch.
        info = {"item": np.int64(shown)}
        if self._latent_in_info:
            info["latent_reward"] = np.float32(latent.item())
        info |= privileged_info(self.core, 0)
        obs = self.core._observation()[0].numpy()
        return obs, reward, terminated, truncated, info

    def render(self) -> np.ndarray | str | None:
        """The session so far: an RGB frame (uint8 [H, W, 3]) for "rgb_array", one line of
        text for "ansi"; None (with Gymnasium's warning) without a render mode."""
        if self.render_mode is None:
            gym.logger.warn(
                "You are calling render method without specifying any render mode: pass "
                'render_mode="rgb_array" or "ansi" to gym.make'
            )
            return None
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before render()")
        if self.render_mode == "ansi":
            return self._text()
        if self._picture is None:
            from envs.gym_render import SessionPicture  # matplotlib: only when drawing

            self._picture = SessionPicture(self.core.catalogue.embeddings)
        preference = self.core.latent_state()["preference"][0]
        return self._picture.draw(preference, list(self._recent), self._text())

    def _text(self) -> str:
        item, reward = ("-", "-") if self._last is None else (self._last[0], f"{self._last[1]:.3f}")
        return (
            f"step {self._steps} | item {item} | reward {reward} | "
            f"return {self._return:.3f} | recent {list(self._recent)}"
        )
