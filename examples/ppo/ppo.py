"""Online PPO against simulated user sessions, through a TorchRL collector.

No logs here: the batched ``UserSession`` env is stepped with the current policy by a
``torchrl.collectors.Collector``; each rollout ``[num_envs, T]`` gets GAE advantages from
the current critic, then ``ppo_epochs`` passes of mini-batch updates. The actor, critic,
``ClipPPOLoss`` and optimiser come from the ``drpo_rl`` registry; the policy is evaluated
online (deterministically, on fresh users) every ``logger.eval_interval`` frames.

    python examples/ppo/ppo.py
    python examples/ppo/ppo.py collector.total_frames=1000000 env.num_envs=256
    python examples/ppo/ppo.py env.device=cuda compile.compile=true
"""

from __future__ import annotations

import hydra
import torch
import tqdm
from omegaconf import DictConfig, OmegaConf
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, SamplerWithoutReplacement, TensorDictReplayBuffer
from torchrl.record.loggers import generate_exp_name, get_logger

import envs
from drpo_rl.algorithms import build
from drpo_rl.evaluation import evaluate


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    device = torch.device(cfg.env.device)
    env_config = OmegaConf.to_container(cfg.env.config)
    torch.manual_seed(cfg.env.seed)
    if cfg.collector.total_frames < cfg.collector.frames_per_batch:
        raise ValueError(
            f"collector.total_frames: expected at least one rollout of "
            f"collector.frames_per_batch={cfg.collector.frames_per_batch} frames, "
            f"got {cfg.collector.total_frames}"
        )

    logger = None
    if cfg.logger.backend:
        exp_name = generate_exp_name("PPO", cfg.logger.exp_name)
        logger = get_logger(cfg.logger.backend, cfg.logger.log_dir, exp_name)

    env = envs.make_env(
        cfg.env.name, num_envs=cfg.env.num_envs, device=device, seed=cfg.env.seed, **env_config
    )

    # Actor (writes "action_log_prob" when sampling), V(s) critic, ClipPPOLoss with GAE.
    algo = build(
        "ppo",
        env,
        lr=cfg.optim.lr,
        batch_size=cfg.loss.mini_batch_size,
        num_cells=cfg.model.num_cells,
        depth=cfg.model.depth,
        head=cfg.model.head,
        clip_epsilon=cfg.loss.clip_epsilon,
        entropy_coeff=cfg.loss.entropy_coeff,
        gamma=cfg.loss.gamma,
        lmbda=cfg.loss.lmbda,
    )
    loss_module = algo.loss_modules["policy"]
    loss_module.to(device)
    algo.policy.to(device)

    collector = Collector(
        env,
        algo.policy,
        frames_per_batch=cfg.collector.frames_per_batch,
        total_frames=cfg.collector.total_frames,
        device=device,
        # The policy needs no transforms appended to the env (it is not recurrent).
        auto_register_policy_transforms=False,
    )
    # Each rollout is split into shuffled mini-batches, every sample used once per epoch.
    buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(cfg.collector.frames_per_batch, device=device),
        sampler=SamplerWithoutReplacement(),
        batch_size=cfg.loss.mini_batch_size,
    )

    # One gradient step; it returns detached tensors without a host synchronisation, so
    # it can be compiled whole.
    update = algo.update
    if cfg.compile.compile:
        update = torch.compile(update, mode=cfg.compile.compile_mode)

    def evaluate_policy() -> dict[str, float]:
        return evaluate(
            algo.policy,
            cfg.env.name,
            num_users=cfg.logger.eval_users,
            device=device,
            seed=cfg.logger.eval_seed,
            env_overrides=env_config,
        )

    frames = 0
    pbar = tqdm.tqdm(total=cfg.collector.total_frames, desc="ppo", unit="frame")
    for rollout in collector:
        terms = []
        for _ in range(cfg.loss.ppo_epochs):
            with torch.no_grad():
                loss_module.value_estimator(rollout)  # GAE with the current critic
            buffer.extend(rollout.reshape(-1))
            for batch in buffer:
                terms.append(update(batch))

        metrics = {key: torch.stack([t[key] for t in terms]).mean() for key in terms[0]}
        metrics = {f"train/{key}": value for key, value in metrics.items()}
        metrics["train/reward"] = rollout["next", "reward"].mean()
        metrics["train/ended_sessions"] = rollout["next", "done"].sum()

        previous, frames = frames, frames + rollout.numel()
        pbar.update(rollout.numel())
        last = frames >= cfg.collector.total_frames
        if last or frames // cfg.logger.eval_interval > previous // cfg.logger.eval_interval:
            result = evaluate_policy()
            metrics.update({f"eval/{key}": value for key, value in result.items()})
            pbar.set_postfix(eval_reward=f"{result['reward']:.4f}")
        if logger is not None:
            logger.log_metrics(metrics, frames)
    pbar.close()
    collector.shutdown()

    sessions = ""
    if "return" in result:  # multi-step envs
        sessions = (
            f", return {result['return']:.3f} +- {result['return_ci95']:.3f} per session "
            f"(length {result['length']:.2f})"
        )
    print(
        f"final evaluation of ppo after {frames} frames ({result['num_users']} users): "
        f"reward {result['reward']:.4f} +- {result['reward_ci95']:.4f} per step{sessions}, "
        f"hit rate {result['hit_rate']:.3f}"
    )


if __name__ == "__main__":
    main()
