"""``generate_logs``: run a behaviour mixture in a simulated env into an offline dataset.

The batched env is stepped by a TorchRL :class:`~torchrl.collectors.Collector` under a
:class:`~drpo_rl.data.behavior.BehaviorMixture`; each collected batch is reduced to the log
keys (:data:`LOG_KEYS`), moved to the CPU and appended to a ``LazyMemmapStorage`` in a
staging folder, which becomes the dataset at ``path`` once complete (see
:mod:`drpo_rl.data.dataset`).

Layouts: horizon-1 envs (the bandits) store one row per interaction (``[rows]``); session
envs store ``[time, env]``, each user's steps contiguous in time, with the keys of
:data:`SESSION_KEYS` (trajectory id, step index, return-to-go), so that
:class:`~torchrl.data.SliceSampler` over ``("collector", "traj_ids")`` cuts whole or
partial sessions out of the box. In session logs leaving is ``("next", "terminated")``, the
env's length cap ``("next", "truncated")``, and so is the end of the logging window: the
last logged step of a user still in session is marked truncated (and done), because the
session went on unlogged.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import ReplayBuffer
from torchrl.envs import StepCounter, TransformedEnv
from torchrl.objectives.value.functional import reward2go
from tqdm.auto import tqdm

from drpo_rl.data.behavior import BehaviorMixture
from drpo_rl.data.dataset import FORMAT_VERSION, OfflineLogs
from drpo_rl.data.layout import (
    BEHAVIOR_AGENT_KEY,
    BEHAVIOR_LOG_PROB_KEY,
    RETURN_TO_GO_KEY,
    STEP_KEY,
    TRAJ_KEY,
    settings_differences,
)
from drpo_rl.data.scenarios import scenario_name, scenario_weights
from drpo_rl.data.staging import StagedDataset
from envs import EnvSpec
from envs.common.checks import check_int, check_number, fail, is_int
from envs.devices import check_device

# The pieces of generate_logs that the sharded writer (drpo_rl.distributed.logs) and the
# logging benchmark reuse are public too: collect, make_collector, resolve_num_envs,
# derived_seeds, check_same_request, to_json, versions.
__all__ = ["DEFAULT_SESSION_GAMMA", "LOG_KEYS", "SESSION_KEYS", "generate_logs", "logged_keys"]

#: Keys stored for every interaction; of the env's privileged truth, only the noiseless
#: reward of the item shown ("latent_reward", for analysis; no learner reads it).
LOG_KEYS = (
    "observation",
    "action",
    BEHAVIOR_LOG_PROB_KEY,
    BEHAVIOR_AGENT_KEY,
    ("next", "observation"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
    ("next", "truncated"),
    ("next", "item"),
    ("next", "latent_reward"),
)
#: Added for session envs (see :mod:`drpo_rl.data.layout`): the collector's trajectory
#: ids (unique per user session), the step index in the session, the return-to-go.
SESSION_KEYS = (TRAJ_KEY, STEP_KEY, RETURN_TO_GO_KEY)
#: The discount of the stored return-to-go of session logs: an effective horizon of about
#: ten steps, half the default session cap (docs/method.md, "Sessions").
DEFAULT_SESSION_GAMMA = 0.9

# Rows per collector batch: large enough that per-batch overheads (collector bookkeeping,
# memmap writes) are small next to the env steps.
_ROWS_PER_BATCH = 1 << 16
_DEFAULT_BANDIT_ENVS = 4096
_DEFAULT_SESSION_ENVS = 256
# Settings of the request compared with those stored when a path is re-opened. The device
# is left out on purpose: it changes the random streams, not what the logs are.
_IDENTITY_FIELDS = (
    *("env", "scenario", "behavior", "seed", "num_samples", "num_envs", "return_to_go"),
)


def generate_logs(
    env_name: str | EnvSpec,
    scenario: str | Mapping[str, float],
    num_samples: int,
    *,
    path: str | os.PathLike,
    seed: int,
    device: torch.device | str = "cpu",
    num_envs: int | None = None,
    agent_options: Mapping[str, Mapping[str, Any]] | None = None,
    action_noise: float = 0.0,
    progress: bool = True,
    batch_size: int | None = None,
    sampler: Any | None = None,
    transform: Any | None = None,
    gamma: float = DEFAULT_SESSION_GAMMA,
    **env_overrides: Any,
) -> OfflineLogs:
    """Logs ``num_samples`` interactions of ``scenario``'s behaviour in ``env_name`` at ``path``.

    If ``path`` already holds complete logs made with the same settings, they are opened
    without generating anything; if they were made with other settings, a ``ValueError``
    names every difference (``field: stored ... requested ...``).

    Args:
        env_name (str or EnvSpec): a name of :func:`envs.list_envs` (or its Gymnasium id),
            or an :class:`envs.EnvSpec` (name and config overrides).
        scenario (str or dict): ``"clean"``, ``"medium"``, ``"extreme"``, ``"noise-<p>"`` or
            ``{agent: weight}`` (see :mod:`drpo_rl.data.scenarios`).
        num_samples (int): interactions to log. For session envs a multiple of
            ``num_envs`` (each of the ``num_envs`` users' streams gets the same length).

    Keyword Args:
        path (str or Path): the dataset folder.
        seed (int): seeds the env (users, rewards) and, through a derived stream, the
            behaviour; same settings and seed give identical logs on one device.
        device: where the env and the behaviour run (the logs are stored on the CPU).
        num_envs (int, optional): users simulated in parallel. Default: up to 4096 for the
            bandits; for sessions the largest divisor of ``num_samples`` up to 256.
        agent_options (dict, optional): per-agent keyword arguments, e.g.
            ``{"expert": {"temperature": 0.1}}``.
        action_noise (float): Gaussian noise on embedding actions (see
            :mod:`drpo_rl.data.behavior` for the propensity it implies).
        progress (bool): show a tqdm progress bar.
        batch_size, sampler, transform: for the returned :class:`OfflineLogs`. For
            sessions, e.g. ``SliceSampler(slice_len=..., traj_key=("collector", "traj_ids"))``.
        gamma (float): discount of the return-to-go stored in session logs (in [0, 1];
            recorded in ``metadata["return_to_go"]``; unused by one-step envs).
        **env_overrides: fields of the env's config (``num_items=...``).

    Returns:
        OfflineLogs: the logs, keys :data:`LOG_KEYS` (+ :data:`SESSION_KEYS` for sessions).

    Examples:
        >>> import tempfile
        >>> from drpo_rl.data import generate_logs
        >>> logs = generate_logs("RecSimBanditDiscrete", "medium", 1000, path=tempfile.mkdtemp()
        ...                      + "/logs", seed=0, num_items=50, progress=False, batch_size=64)
        >>> len(logs), logs.sample()["behavior_log_prob"].shape
        (1000, torch.Size([64]))
        >>> logs.metadata["scenario"]
        {'name': 'medium', 'weights': {'expert': 0.1, 'suboptimal': 0.6, 'random': 0.3}}
    """
    # Every argument is checked here, before an env is built or a file written.
    check_int("num_samples", num_samples)
    if not is_int(seed):
        fail("seed", "an integer", seed)
    check_int("num_envs", num_envs, optional=True)
    check_int("batch_size", batch_size, optional=True)
    check_number("gamma", gamma, minimum=0, maximum=1)
    weights = scenario_weights(scenario)
    device = check_device(device)
    spec = env_name if isinstance(env_name, EnvSpec) else EnvSpec(env_name, env_overrides)
    if isinstance(env_name, EnvSpec) and env_overrides:
        raise ValueError("env_overrides only apply when env_name is a name, not an EnvSpec")
    env_seed, behavior_seed = derived_seeds(seed)
    session = spec.config.dynamics().max_length > 1
    num_envs = resolve_num_envs(num_envs, num_samples, session)
    # "latent_reward" is logged for analysis; no learner reads it.
    env = spec.make(num_envs=num_envs, device=device, seed=env_seed, privileged=("latent_reward",))
    generator = torch.Generator(device=device).manual_seed(behavior_seed)
    policy = BehaviorMixture.from_weights(
        env, weights, agent_options=agent_options, action_noise=action_noise, generator=generator
    )
    request = to_json(
        {
            "env": {"name": type(env).__name__, "config": dataclasses.asdict(env.config)},
            "scenario": {"name": scenario_name(scenario), "weights": weights},
            "behavior": {"agents": policy.options(), "action_noise": float(action_noise)},
            "seed": seed,
            "num_samples": num_samples,
            "num_envs": num_envs,
            "return_to_go": {"gamma": float(gamma)} if session else None,
        }
    )
    buffer_kwargs = {"batch_size": batch_size, "sampler": sampler, "transform": transform}
    if OfflineLogs.is_complete(path):
        stored = OfflineLogs(path, **buffer_kwargs)
        check_same_request(path, stored.metadata, request)
        return stored

    keys = LOG_KEYS + (SESSION_KEYS if session else ())  # the order they are stored in
    metadata = {
        "kind": "drpo_rl.generated_logs",
        **request,
        "layout": "time_env" if session else "rows",
        "keys": [list(key) if isinstance(key, tuple) else key for key in keys],
        "agent_ids": {agent.name: agent.agent_id for agent in policy.agents},
        "device": str(device),
        "versions": versions(),
    }
    with StagedDataset(path) as staged:
        storage = staged.make_storage(num_samples, ndim=2 if session else 1)
        writer = ReplayBuffer(storage=storage)
        with tqdm(total=num_samples, unit="rows", disable=not progress, desc="logs") as bar:
            # Sessions: TorchRL's StepCounter writes each step's index in its session.
            collector = make_collector(
                TransformedEnv(env, StepCounter()) if session else env, policy, num_samples
            )
            for batch in collect(collector, num_samples, keys, session=session):
                writer.extend(batch)
                bar.update(batch.batch_size.numel())
        if session:
            _store_return_to_go(storage, gamma)
        staged.commit(storage, metadata)
    return OfflineLogs(path, **buffer_kwargs)


def logged_keys(session: bool) -> set:
    """The keys :func:`generate_logs` stores, for one-step or session envs.

    Example:
        >>> "return_to_go" in logged_keys(True), "return_to_go" in logged_keys(False)
        (True, False)
    """
    return set(LOG_KEYS + (SESSION_KEYS if session else ()))


def make_collector(env: Any, policy: BehaviorMixture, num_samples: int) -> Collector:
    """A collector of ``env`` under ``policy`` in batches of about ``_ROWS_PER_BATCH`` rows."""
    num_envs = env.batch_size[0]
    steps_total = math.ceil(num_samples / num_envs)
    steps_per_batch = max(1, min(steps_total, _ROWS_PER_BATCH // num_envs))
    return Collector(
        env,
        policy,
        frames_per_batch=steps_per_batch * num_envs,
        # Unbounded: the loop below stops at exactly num_samples rows (a bounded total that
        # is no multiple of frames_per_batch makes the collector warn and over-collect).
        total_frames=-1,
        # Our policies need no recurrent-state transforms; opting out also silences
        # torchrl 0.14's FutureWarning about the v0.15 default.
        auto_register_policy_transforms=False,
    )


def collect(
    collector: Collector, num_samples: int, keys: tuple, *, session: bool
) -> Iterator[TensorDictBase]:
    """Yields CPU batches of ``keys`` adding up to exactly ``num_samples`` interactions.

    Batches are ``[rows]`` for one-step envs, ``[env, time]`` for sessions (time last, the
    layout a ``LazyMemmapStorage(ndim=2)`` expects from a collector), whose last batch ends
    every session still running as truncated. Shuts the collector down.
    """
    num_envs = collector.env.batch_size[0]
    remaining = num_samples
    try:
        for batch in collector:
            if session:
                # A placeholder the size of the reward: filled in once all steps are stored.
                batch[RETURN_TO_GO_KEY] = torch.zeros_like(batch["next", "reward"])
            batch = batch.select(*keys)
            if not session:
                batch = batch.reshape(-1)[:remaining]
            elif batch.shape[1] * num_envs > remaining:
                batch = batch[:, : remaining // num_envs]
            remaining -= batch.batch_size.numel()
            if session and remaining == 0:
                _truncate_window(batch)
            yield batch.to("cpu")
            if remaining == 0:
                break
    finally:
        collector.shutdown()


def _truncate_window(batch: TensorDictBase) -> None:
    """Marks the last logged step of every session still running truncated (and done)."""
    last = batch[:, -1]
    running = ~last["next", "done"]
    last["next", "truncated"] |= running
    last["next", "done"] |= running  # in place: ``last`` views the batch's tensors


def _store_return_to_go(storage: Any, gamma: float) -> None:
    """Fills the stored ``[time, env]`` return-to-go in place (TorchRL's ``reward2go``):
    the discounted reward sum to each session's end ("done": leaving, the length cap or
    the logging window)."""
    data = storage._storage
    value = reward2go(data["next", "reward"], data["next", "done"], gamma, time_dim=0)
    data[RETURN_TO_GO_KEY].copy_(value)


def resolve_num_envs(num_envs: int | None, num_samples: int, session: bool) -> int:
    if num_envs is None:
        if not session:
            return min(num_samples, _DEFAULT_BANDIT_ENVS)
        return max(d for d in range(1, _DEFAULT_SESSION_ENVS + 1) if num_samples % d == 0)
    if session and num_samples % num_envs:
        raise ValueError(
            f"num_samples: expected a multiple of num_envs={num_envs} for a session env "
            f"(every user stream is stored with the same length), got {num_samples}"
        )
    return num_envs


def derived_seeds(seed: int) -> tuple[int, int]:
    """Two independent seeds from one: the env's and the behaviour's streams."""
    generator = torch.Generator().manual_seed(seed)
    env_seed, behavior_seed = torch.randint(2**62, (2,), generator=generator).tolist()
    return env_seed, behavior_seed


def check_same_request(path: Any, stored: Mapping[str, Any], request: Mapping[str, Any]) -> None:
    differences = []
    for field in _IDENTITY_FIELDS:
        differences += settings_differences(stored.get(field), request.get(field), f"{field}.")
    if differences:
        raise ValueError(
            f"logs at {path} were generated with other settings; delete the folder or choose "
            "another path. Differences: " + "; ".join(differences)
        )


def to_json(value: Any) -> Any:
    """The JSON form of ``value``, as it reads back from metadata.json (inf as a string)."""
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "format": str(FORMAT_VERSION)}
    for package in ("drpo-rl", "torch", "torchrl", "tensordict", "gymnasium", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
