"""The Gymnasium faces: registration, checkers, make_vec, TorchRL GymEnv, equivalence."""

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from tensordict import TensorDict
from torchrl.envs import GymEnv, GymWrapper
from torchrl.envs.utils import check_env_specs

import envs
from envs import make_env

IDS = ["drpo_rl/RecSimBandit-v0", "drpo_rl/RecSimBanditDiscrete-v0", "drpo_rl/UserSession-v0"]

# The privileged outputs, asked of both faces so that they can be compared too.
PRIVILEGED = ("latent_reward", "oracle", "item_rewards")


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id):
    env = gym.make(env_id, num_items=20)
    with warnings.catch_warnings():
        # Gymnasium's checker advises finite Box bounds; the observation (a Gaussian view of
        # u* and item embeddings) is unbounded, like CartPole's velocities.
        warnings.filterwarnings(
            "ignore", message=r".*Box observation space (minimum|maximum) value is"
        )
        check_env(env.unwrapped)


def test_spaces_match_the_batched_core():
    bandit = gym.make("drpo_rl/RecSimBandit-v0")
    assert bandit.action_space == gym.spaces.Box(-1.0, 1.0, (16,), np.float32)
    assert bandit.observation_space.shape == (16,)
    discrete = gym.make("drpo_rl/RecSimBanditDiscrete-v0", num_items=30)
    assert discrete.action_space == gym.spaces.Discrete(30)
    session = gym.make("drpo_rl/UserSession-v0", history_length=2)
    assert session.action_space == gym.spaces.Discrete(100)
    assert session.observation_space.shape == (16 + 2 * 16 + 2 + 1,)


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_both_modes(env_id):
    for mode in ("vector_entry_point", "sync"):
        vec = gym.make_vec(env_id, num_envs=3, vectorization_mode=mode)
        obs, _ = vec.reset(seed=0)
        assert obs.shape == (3, *vec.single_observation_space.shape)
        actions = vec.action_space.sample()
        obs, reward, terminated, truncated, info = vec.step(actions)
        assert obs.shape[0] == 3 and reward.shape == (3,)
        assert np.issubdtype(reward.dtype, np.floating) and ((reward >= 0) & (reward <= 1)).all()
        assert terminated.dtype == np.bool_ and truncated.shape == (3,)
        vec.close()
    fast = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    assert isinstance(fast.unwrapped, envs.SimulatedUsersVectorEnv)


def test_vector_env_matches_batched_core_and_resets_same_step():
    # Low patience: users leave at different steps, so same-step resets are partial.
    overrides = {"max_length": 6, "patience": 1.0, "privileged": PRIVILEGED}
    vec = gym.make_vec(
        "drpo_rl/UserSession-v0",
        num_envs=6,
        vectorization_mode="vector_entry_point",
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        **overrides,
    )
    core = make_env("UserSession", num_envs=6, seed=5, **overrides)
    obs, info = vec.reset(seed=5)
    td = core.reset()
    np.testing.assert_array_equal(obs, td["observation"].numpy())
    np.testing.assert_array_equal(info["item_rewards"], td["item_rewards"].numpy())
    rng = np.random.default_rng(0)
    partial_seen = False
    for _ in range(8):
        items = rng.integers(0, 100, size=6)
        obs, reward, terminated, truncated, info = vec.step(items)
        td["action"] = torch.from_numpy(items)
        td, td_next = core.step_and_maybe_reset(td)
        nxt = td["next"]
        np.testing.assert_array_equal(reward, nxt["reward"][:, 0].numpy())
        np.testing.assert_array_equal(terminated, nxt["terminated"][:, 0].numpy())
        assert not truncated.any()
        # The shown item's entries: in info where the user stays, in final_info where done.
        np.testing.assert_array_equal(step_entry(info, "item"), items)
        latent = step_entry(info, "latent_reward")
        np.testing.assert_array_equal(latent, nxt["latent_reward"][:, 0].numpy())
        if terminated.any():
            final_obs = info["final_obs"][terminated]
            np.testing.assert_array_equal(final_obs, nxt["observation"].numpy()[terminated])
            np.testing.assert_array_equal(info["_final_obs"], terminated)
        else:
            assert "final_obs" not in info
        # Same-step autoreset: the returned observation is the new user's where done.
        np.testing.assert_array_equal(obs, td_next["observation"].numpy())
        np.testing.assert_array_equal(info["item_rewards"], td_next["item_rewards"].numpy())
        np.testing.assert_array_equal(info["oracle_item"], td_next["oracle_item"].numpy())
        partial_seen |= bool(terminated.any() and not terminated.all())
        td = td_next
    assert partial_seen


def step_entry(info, key):
    """A step's info entry for every user of a SAME_STEP vector env (Gymnasium's layout:
    where a user's episode ended, info holds its new start and info["final_info"] the step)."""
    if "final_info" not in info:
        return info[key]
    ended = info["_final_info"]
    np.testing.assert_array_equal(info["final_info"][f"_{key}"], ended)
    return np.where(ended, info["final_info"][key], info[key])


def test_vector_env_partial_reset_option():
    vec = envs.SimulatedUsersVectorEnv(num_envs=3, name="UserSession")
    obs, _ = vec.reset(seed=0)
    obs, *_ = vec.step(np.array([0, 1, 2]))
    mask = np.array([True, False, False])
    new_obs, _ = vec.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(new_obs[1:], obs[1:])
    assert not np.array_equal(new_obs[0], obs[0])
    with pytest.raises(ValueError, match=r"reset_mask.*shape \(3,\)"):
        vec.reset(options={"reset_mask": np.array([True, False])})


@pytest.mark.parametrize("env_id", IDS)
def test_torchrl_gymenv_wrapping(env_id):
    env = GymEnv(env_id, categorical_action_encoding=True, num_items=20)
    check_env_specs(env)
    core = make_env(env_id, num_items=20)
    obs_shape = core.observation_spec["observation"].shape[1:]
    assert env.observation_spec["observation"].shape == obs_shape
    assert env.action_spec.shape == core.action_spec.shape[1:]


def test_torchrl_wraps_the_vector_env():
    vec = gym.make_vec(
        "drpo_rl/RecSimBanditDiscrete-v0",
        num_envs=4,
        vectorization_mode="vector_entry_point",
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,  # TorchRL wraps only this mode
    )
    env = GymWrapper(vec, categorical_action_encoding=True)
    assert env.batch_size == torch.Size([4])
    check_env_specs(env)


@pytest.mark.parametrize("name", ["RecSimBandit", "RecSimBanditDiscrete", "UserSession"])
def test_gym_env_equals_batched_env_for_one_user(name):
    seed = 11
    overrides = {"max_length": 4} if name == "UserSession" else {}
    gym_env = gym.make(f"drpo_rl/{name}-v0", privileged=PRIVILEGED, **overrides)
    core = make_env(name, num_envs=1, seed=seed, privileged=PRIVILEGED, **overrides)
    rng = np.random.default_rng(0)
    obs, info = gym_env.reset(seed=seed)
    td = core.reset()
    np.testing.assert_array_equal(obs, td["observation"][0].numpy())
    np.testing.assert_array_equal(info["item_rewards"], td["item_rewards"][0].numpy())
    for _ in range(3):
        if core.config.action_type == "item":
            action = int(rng.integers(core.config.num_items))
            td["action"] = torch.tensor([action])
        else:
            action = rng.standard_normal(16).astype(np.float32)
            td["action"] = torch.from_numpy(action).unsqueeze(0)
        obs, reward, terminated, truncated, info = gym_env.step(action)
        td, td_next = core.step_and_maybe_reset(td)
        nxt = td["next"]
        np.testing.assert_array_equal(obs, nxt["observation"][0].numpy())
        assert reward == float(nxt["reward"][0, 0])
        assert info["latent_reward"] == float(nxt["latent_reward"][0, 0])
        assert info["item"] == int(nxt["item"][0])
        assert terminated == bool(nxt["terminated"][0, 0])
        np.testing.assert_array_equal(info["item_rewards"], nxt["item_rewards"][0].numpy())
        assert info["oracle_reward"] == float(nxt["oracle_reward"][0, 0])
        if terminated or truncated:
            obs, info = gym_env.reset()
            np.testing.assert_array_equal(obs, td_next["observation"][0].numpy())
        td = td_next


@pytest.mark.parametrize(
    ("env_id", "action", "match"),
    [
        ("drpo_rl/RecSimBanditDiscrete-v0", 1.5, r"expected an integer item id in \[0, 99\]"),
        ("drpo_rl/RecSimBanditDiscrete-v0", 100, r"expected item ids in \[0, 99\]"),
        ("drpo_rl/RecSimBandit-v0", np.zeros(3, np.float32), r"shape \(16,\)"),
        ("drpo_rl/RecSimBandit-v0", np.zeros(16, np.int64), r"expected a float array"),
    ],
)
def test_gym_bad_actions(env_id, action, match):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_module_prefixed_id_works_without_importing_envs():
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'envs' not in sys.modules\n"
        "env = gym.make('envs:drpo_rl/RecSimBandit-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        "vec = gym.make_vec('envs:drpo_rl/UserSession-v0', num_envs=2,"
        " vectorization_mode='vector_entry_point')\n"
        "print(obs.shape, vec.reset(seed=0)[0].shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(16,) (2, 102)"


def test_register_envs_is_idempotent_and_uses_both_entry_points():
    envs.register_envs()
    for env_id in IDS:
        spec = gym.spec(env_id)
        assert spec.entry_point == "envs.gym_env:SimulatedUsersGymEnv"
        assert spec.vector_entry_point == "envs.gym_vector:SimulatedUsersVectorEnv"


def test_partial_reset_through_gym_vector_keeps_state_tensordict():
    # The vector env's same-step reset goes through the core's "_reset" path.
    vec = envs.SimulatedUsersVectorEnv(num_envs=2, name="RecSimBandit")
    vec.reset(seed=3)
    before = vec.core.latent_state()
    vec.core.reset(TensorDict({"_reset": torch.tensor([[False], [True]])}, batch_size=[2]))
    after = vec.core.latent_state()
    assert torch.equal(before["preference"][0], after["preference"][0])
    assert not torch.equal(before["preference"][1], after["preference"][1])


def test_gymnasium_plugin_entry_point_is_declared_and_loads():
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="gymnasium.envs") if ep.name == "drpo_rl"]
    assert plugin.value == "envs.registration:register_envs"
    assert plugin.load() is envs.register_envs
