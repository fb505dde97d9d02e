"""Registration of the suite's Gymnasium ids in namespace `drpo_rl`."""

from __future__ import annotations

import gymnasium as gym

from envs.factory import ENV_CLASSES, gym_id


def register_envs() -> None:
    """Register every environment of the suite with Gymnasium (idempotent).

    Each id gets an `entry_point` (one user, `SimulatedUsersGymEnv`) and a
    `vector_entry_point` (`SimulatedUsersVectorEnv`, the batched core). `import envs` calls
    it; pyproject also declares it as the `gymnasium.envs` plugin, for tools that still
    load plugins (Gymnasium >= 1.0 does not: import envs first, or use the module-prefixed
    id "envs:drpo_rl/RecSimBandit-v0").

    Example:
        >>> import gymnasium as gym
        >>> from envs.registration import register_envs
        >>> register_envs()
        >>> "drpo_rl/UserSession-v0" in gym.registry
        True
    """
    for name in ENV_CLASSES:
        env_id = gym_id(name)
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="envs.gym_env:SimulatedUsersGymEnv",
            vector_entry_point="envs.gym_vector:SimulatedUsersVectorEnv",
            kwargs={"name": name},
        )
