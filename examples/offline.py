"""The offline training program shared by ``drpo/``, ``iql/`` and ``cql/``.

The steps of a TorchRL offline script, top to bottom: generate (once) or open the logs, a
replay buffer over them, the policy, loss(es) and optimiser from the ``drpo_rl`` registry, a
compilable ``update(batch)``, and online evaluation against fresh simulated users (a
TorchRL collector underneath) every ``logger.eval_iter`` steps, with metrics through
TorchRL's loggers. Each algorithm folder holds a hydra entry point and its ``config.yaml``;
the entry point calls :func:`main` with its algorithm's name.

    python examples/drpo/drpo.py loss=drpo-exp logs.scenario=extreme
    python examples/iql/iql.py env.name=RecSimBanditDiscrete
    python examples/cql/cql.py env.device=cuda compile.compile=true
"""

from __future__ import annotations

import torch
import tqdm
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torchrl.record.loggers import generate_exp_name, get_logger

import envs
from drpo_rl.algorithms import build
from drpo_rl.data import OfflineLogs, generate_logs
from drpo_rl.evaluation import evaluate, evaluation_env
from envs.common.checks import check_int


def main(cfg: DictConfig, algorithm: str) -> None:
    """Train ``algorithm`` (``"drpo"``, ``"iql"``, ``"cql"``) as ``cfg`` says, then evaluate.

    The registry entry is ``cfg.loss.name`` when the config has one (DRPO's variants are a
    config group), else ``algorithm``; the other ``cfg.loss`` keys are its options.
    """
    device = torch.device(cfg.optim.device or cfg.env.device)
    # The simulated users of the logs and of the evaluation: one checked name + overrides.
    env_spec = envs.EnvSpec(cfg.env.name, OmegaConf.to_container(cfg.env.config))
    torch.manual_seed(cfg.env.seed)
    steps = check_int("optim.gradient_steps", cfg.optim.gradient_steps)

    logger = None
    if cfg.logger.backend:
        exp_name = generate_exp_name(algorithm.upper(), cfg.logger.exp_name)
        logger = get_logger(cfg.logger.backend, cfg.logger.log_dir, exp_name)

    # Offline logs: a TorchRL replay buffer over a memory-mapped folder. The losses read
    # only their own keys (observation, action, reward, ...), never the behaviour agent's
    # id or the simulator's noiseless reward that the logs keep for analysis.
    logs_path = to_absolute_path(cfg.logs.path)
    if cfg.logs.generate:
        logs = generate_logs(
            env_spec,
            cfg.logs.scenario,
            cfg.logs.num_samples,
            path=logs_path,
            seed=cfg.logs.seed,
            device=cfg.env.device,
            batch_size=cfg.replay_buffer.batch_size,
        )
    else:
        logs = OfflineLogs(logs_path, batch_size=cfg.replay_buffer.batch_size)

    # Policy, loss modules (DRPO's weighted policy loss; IQL's actor, Q and V losses; CQL's
    # conservative Q loss), Adam and the target updaters of the chosen registry entry.
    hparams = OmegaConf.to_container(cfg.loss)
    variant = hparams.pop("name", algorithm)
    algo = build(
        variant,
        env_spec.make(),  # only its specs are read
        lr=cfg.optim.lr,
        batch_size=cfg.replay_buffer.batch_size,
        num_cells=cfg.model.num_cells,
        depth=cfg.model.depth,
        head=cfg.model.head,
        **hparams,
    )
    for loss_module in algo.loss_modules.values():
        loss_module.to(device)
    algo.policy.to(device)

    # One gradient step; it returns detached tensors without a host synchronisation, so
    # it can be compiled whole.
    update = algo.update
    if cfg.compile.compile:
        update = torch.compile(update, mode=cfg.compile.compile_mode)

    # The evaluation's simulated users: built once, re-seeded by every evaluation.
    eval_env = evaluation_env(env_spec, cfg.logger.eval_users, device=cfg.env.device)

    def evaluate_policy() -> dict[str, float]:
        return evaluate(
            algo.policy,
            eval_env,
            num_users=cfg.logger.eval_users,
            device=cfg.env.device,
            seed=cfg.logger.eval_seed,
        )

    pbar = tqdm.tqdm(range(1, steps + 1), desc=variant, unit="step")
    for step in pbar:
        terms = update(logs.sample().to(device))

        metrics = {}
        if step % cfg.logger.log_interval == 0:
            metrics.update({f"train/{key}": value for key, value in terms.items()})
        if step % cfg.logger.eval_iter == 0 or step == steps:
            result = evaluate_policy()
            metrics.update({f"eval/{key}": value for key, value in result.items()})
            postfix = {"eval_reward": f"{result['reward']:.4f}"}
            if "kappa" in terms:  # DRPO's adaptive kept fraction
                postfix["kappa"] = float(terms["kappa"])
            pbar.set_postfix(postfix)
        if logger is not None and metrics:
            logger.log_metrics(metrics, step)
    pbar.close()

    print(
        f"final evaluation of {variant} after {steps} steps ({result['num_users']} users): "
        f"reward {result['reward']:.4f} +- {result['reward_ci95']:.4f}, "
        f"eCPM {result['ecpm']:.3f}, hit rate {result['hit_rate']:.3f}"
    )
