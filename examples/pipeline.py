"""DRPO in a plain TorchRL pipeline: env, offline logs, actor, loss, optimiser, evaluation.

Each piece is an ordinary TorchRL object: the simulated users are a batched ``EnvBase``,
the logs a replay buffer (``OfflineLogs``, memory-mapped on disk), the policy a
``ProbabilisticActor`` and ``DRPOLoss`` a ``LossModule``. Runs in seconds on a CPU:

    python examples/pipeline.py
"""

import tempfile
from pathlib import Path

import torch

from drpo_rl.data import generate_logs
from drpo_rl.evaluation import evaluate, oracle_policy
from drpo_rl.models import make_gaussian_actor
from drpo_rl.objectives import DRPOLoss
from envs import make_env

torch.manual_seed(0)

# 1000 simulated users at a time; the policy recommends an item embedding, decoded to the
# nearest catalogue item (docs/method.md, "Simulated users").
env = make_env("RecSimBandit", num_envs=1000, seed=0)

# 20k interactions logged by 90% random, 5% popularity-driven and 5% expert behaviour.
# Generated once; later runs re-open the folder.
logs = generate_logs(
    "RecSimBandit",
    "extreme",
    20_000,
    path=Path(tempfile.gettempdir()) / "drpo-rl-pipeline-logs",
    seed=0,
    batch_size=320,
)

actor = make_gaussian_actor(env)  # N(mu(s), sigma^2 I), reads "observation", writes "action"
loss_module = DRPOLoss(actor, kappa=0.5)  # learns from the top-kappa rewards of each batch
optimizer = torch.optim.Adam(loss_module.parameters(), lr=1e-3)

for _ in range(500):
    out = loss_module(logs.sample())
    optimizer.zero_grad()
    out["loss_objective"].backward()
    optimizer.step()
    loss_module.update(out)  # adaptive kappa, from the statistics the forward returned

# Deterministic policy (its mean) on 10k fresh users, through a TorchRL collector.
# Evaluation builds its own users (with the privileged truth behind regret and the oracle).
reward = evaluate(actor, "RecSimBandit", num_users=10_000, seed=1)["reward"]
best = evaluate(oracle_policy(env), "RecSimBandit", num_users=10_000, seed=1)["reward"]
logged = logs[:]["next", "reward"].mean().item()
print(f"reward: logged {logged:.3f}, DRPO policy {reward:.3f}, oracle {best:.3f}")
