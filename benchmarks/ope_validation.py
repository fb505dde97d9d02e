"""Off-policy evaluation against the simulator's truth: bias, RMSE, coverage, rank (not a test).

For each scenario and seed, mixed-quality logs are drawn from the scenario's behaviour
mixture in ``RecSimBandit`` (embedding actions, ``action_noise = 0``: the logged
propensity is the item's probability); five policies of different quality are then scored
by every horizon-1 estimator of ``off_policy_evaluate`` on those logs, and by
``evaluate()`` online on fresh users (the truth):

- ``random``: an untrained Gaussian actor (its mean decodes to an arbitrary item);
- ``behaviour``: the logging mixture itself, as a stochastic item distribution;
- ``bc`` and ``drpo``: trained on the logs (``drpo_rl.benchmark.training.train``);
- ``oracle``: the best item for each user (the logs keep the env's privileged
  ``oracle_item`` for it; no learner reads it).

Rows are logged by stepping the batched env once under the mixture (one row per user), as
``generate_logs`` does through its collector, keeping also the mixture's item distribution
(for the ``behaviour`` target) and ``oracle_item``. One reward model per logs serves all
five policies. Per scenario and estimator the table gives the mean bias and RMSE over
policies and seeds, the share of intervals that cover the truth, and the mean Spearman
rank correlation between the five estimated and true values. The plot (estimate vs truth,
one panel per estimator) goes to ``--plot``.

Real logs (``--obd``, the Open Bandit Dataset sample shipped with ``obp``): the Bernoulli
Thompson sampling policy (BTS) is estimated from the uniform-random logs and compared with
BTS's own logs' mean click rate (a Student-t interval). BTS, as run in ZOZOTOWN, drew one
click-rate sample per item from Beta(alpha, beta) priors (``obp/policy/conf/prior_bts.yaml``,
read as data) and showed the three highest at positions 1-3; its item distribution per
position is computed by Monte-Carlo (1M draws; ``drpo_rl.evaluation.off_policy.obd_bts``),
as obp's ``compute_batch_action_dist`` does, and played as a stochastic target of each row's
position.

Sessions (``--sessions``): BC and DRPO trained on ``UserSession`` logs (20 items, the
extreme scenario, 20,000 steps per seed), estimated by PDIS, WPDIS, and DM/DR through fitted
Q evaluation, against ``evaluate()``'s mean session return.

Usage::

    python benchmarks/ope_validation.py                  # ~3 min on 2 shared cores
    python benchmarks/ope_validation.py --obd            # the Open Bandit Dataset check
    python benchmarks/ope_validation.py --sessions --seeds 2
    python benchmarks/ope_validation.py --seeds 5 --log-samples 20000 --json ope.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from tensordict.nn import TensorDictModule
from torchrl.modules import ProbabilisticActor

from drpo_rl.benchmark.training import train
from drpo_rl.data import BehaviorMixture, scenario_weights
from drpo_rl.evaluation import (
    evaluate,
    evaluation_env,
    fit_reward_model,
    off_policy_evaluate,
    oracle_policy,
)
from drpo_rl.evaluation.off_policy.names import BANDIT_ESTIMATORS
from drpo_rl.models import PolicySpecs, make_actor
from envs import EnvSpec

POLICIES = ("random", "behaviour", "bc", "drpo", "oracle")
BEHAVIOUR_LOGITS = "behaviour_logits"


def log_rows(spec: EnvSpec, scenario: str, num_rows: int, seed: int):
    """One step of ``num_rows`` users under the scenario's mixture: the logged rows, with
    the mixture's item log-probabilities and the privileged ``oracle_item``."""
    env = spec.make(num_envs=num_rows, seed=seed, privileged=("latent_reward", "oracle"))
    generator = torch.Generator().manual_seed(seed + 7)
    mixture = BehaviorMixture.from_weights(env, scenario_weights(scenario), generator=generator)
    td = mixture(env.reset())
    td.set(
        BEHAVIOUR_LOGITS,
        mixture.distribution().log_probs(slice(0, env.catalogue.embeddings.shape[0])),
    )
    return env.step(td), mixture


def behaviour_target() -> ProbabilisticActor:
    """The logging mixture as a target policy: its item distribution, read from the rows."""
    module = TensorDictModule(lambda x: x, in_keys=[BEHAVIOUR_LOGITS], out_keys=["logits"])
    return ProbabilisticActor(
        module, in_keys=["logits"], distribution_class=torch.distributions.Categorical
    )


def trained(algorithm: str, rows, specs, args, seed: int, truth) -> dict:
    """``algorithm`` trained on ``rows`` as the benchmark trains it (its record: the policy
    and, from ``truth``, its online metrics)."""
    return train(
        algorithm,
        rows,
        specs,
        steps=args.steps,
        batch_size=256,
        lr=1e-3,
        seed=seed,
        device=torch.device("cpu"),
        hparams={},
        curve_points=1,
        evaluate_policy=truth,
    )


def spearman(x: list[float], y: list[float]) -> float:
    rank = lambda v: torch.tensor(v).argsort().argsort().double()  # noqa: E731
    rx, ry = rank(x), rank(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


def run(args) -> list[dict]:
    spec = EnvSpec(args.env)
    eval_env = evaluation_env(spec, args.eval_users)
    records = []
    for scenario in args.scenarios.split(","):
        for seed in range(args.seeds):
            started = time.perf_counter()
            rows, mixture = log_rows(spec, scenario, args.log_samples, seed)
            specs = PolicySpecs.from_env(spec.make())

            def truth(policy, final=True, seed=seed):
                return evaluate(policy, eval_env, num_users=args.eval_users, seed=10_000 + seed)

            torch.manual_seed(seed)
            policies = {
                "random": (make_actor(specs), True),
                "oracle": (oracle_policy(spec.make()), True),
            }
            truths = {
                "random": truth(policies["random"][0]),
                "oracle": truth(policies["oracle"][0]),
            }
            truths["behaviour"] = truth(mixture)
            policies["behaviour"] = (behaviour_target(), False)
            for algorithm in ("bc", "drpo"):
                result = trained(algorithm, rows, specs, args, seed, truth)
                policies[algorithm] = (result["policy"], True)
                truths[algorithm] = result["metrics"]
            model = fit_reward_model(rows, env=spec, seed=seed)
            for name in POLICIES:
                policy, deterministic = policies[name]
                estimates = off_policy_evaluate(
                    policy,
                    rows,
                    env=spec,
                    reward_model=model,
                    deterministic=deterministic,
                    num_bootstrap=args.bootstrap,
                    seed=seed,
                )
                for estimator, e in estimates.items():
                    records.append(
                        {
                            "scenario": scenario,
                            "seed": seed,
                            "policy": name,
                            "estimator": estimator,
                            "truth": truths[name]["reward"],
                            **e.to_dict(),
                        }
                    )
            print(
                f"{scenario} seed {seed}: {time.perf_counter() - started:.0f} s; reward model "
                f"held-out RMSE {model.heldout_rmse:.3f}",
                flush=True,
            )
    return records


def summary(records: list[dict]) -> list[dict]:
    rows = []
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        for estimator in BANDIT_ESTIMATORS:
            mine = [r for r in records if r["scenario"] == scenario and r["estimator"] == estimator]
            errors = [r["value"] - r["truth"] for r in mine]
            rhos = []
            for seed in dict.fromkeys(r["seed"] for r in mine):
                part = [r for r in mine if r["seed"] == seed]
                rhos.append(spearman([r["value"] for r in part], [r["truth"] for r in part]))
            rows.append(
                {
                    "scenario": scenario,
                    "estimator": estimator,
                    "bias": sum(errors) / len(errors),
                    "rmse": math.sqrt(sum(e * e for e in errors) / len(errors)),
                    "coverage": sum(r["low"] <= r["truth"] <= r["high"] for r in mine) / len(mine),
                    "spearman": sum(rhos) / len(rhos),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| scenario | estimator | bias | RMSE | coverage | Spearman |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['estimator']} | {r['bias']:+.4f} | {r['rmse']:.4f} | "
            f"{r['coverage']:.2f} | {r['spearman']:.2f} |"
        )
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    estimators = list(dict.fromkeys(r["estimator"] for r in records))
    scenarios = list(dict.fromkeys(r["scenario"] for r in records))
    columns = math.ceil(len(estimators) / 2)
    fig, grid = plt.subplots(2, columns, figsize=(3.0 * columns, 6.2), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(estimators) :]:
        ax.axis("off")
    lo = min(min(r["truth"], r["value"]) for r in records) - 0.02
    hi = max(max(r["truth"], r["value"]) for r in records) + 0.02
    for ax, estimator in zip(axes, estimators, strict=False):
        for k, scenario in enumerate(scenarios):
            mine = [r for r in records if r["estimator"] == estimator and r["scenario"] == scenario]
            ax.errorbar(
                [r["truth"] for r in mine],
                [r["value"] for r in mine],
                yerr=[
                    [r["value"] - r["low"] for r in mine],
                    [r["high"] - r["value"] for r in mine],
                ],
                fmt="o",
                ms=3,
                lw=0.6,
                color=f"C{k}",
                label=scenario,
            )
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(estimator)
        ax.set_xlabel("true online reward")
    for row in grid:
        row[0].set_ylabel("estimate (95% interval)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Off-policy estimates vs evaluate() truth\n(random, behaviour, BC, DRPO, oracle)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def obd_check(campaign: str = "all") -> dict:
    """BTS's value estimated from OBD's random logs vs BTS's on-policy mean click."""
    from scipy.stats import t as student_t

    from drpo_rl.data import parse_obd
    from drpo_rl.data.loaders.obd import obd_sample_path
    from drpo_rl.evaluation.off_policy.obd_bts import bts_item_probs, bts_policy, bts_prior

    random_logs = parse_obd(obd_sample_path("random", campaign))
    bts_logs = parse_obd(obd_sample_path("bts", campaign))
    positions = len(random_logs.metadata["vocabulary"]["position"])
    bts = bts_policy(bts_item_probs(bts_prior(campaign), positions))
    estimates = off_policy_evaluate(
        bts,
        random_logs.data,
        num_items=random_logs.metadata["num_items"],
        deterministic=False,
    )
    clicks = bts_logs.data["next", "reward"].double().flatten()
    half = float(student_t.ppf(0.975, len(clicks) - 1)) * clicks.std().item() / len(clicks) ** 0.5
    on_policy = clicks.mean().item()
    return {
        "on_policy": {"value": on_policy, "low": on_policy - half, "high": on_policy + half},
        "estimates": {k: e.to_dict() for k, e in estimates.items()},
    }


def session_check(args) -> list[dict]:
    """Session OPE (PDIS, WPDIS, DM and DR through FQE) of BC and DRPO trained on
    ``UserSession`` logs (20 items, extreme scenario), against ``evaluate()``'s return."""
    import tempfile

    from drpo_rl.data import generate_logs

    spec = EnvSpec("UserSession", {"num_items": 20})
    rows = []
    for seed in range(args.seeds):
        logs = generate_logs(
            spec,
            "extreme",
            20_000,
            path=tempfile.mkdtemp() + "/logs",
            seed=seed,
            num_envs=200,
            progress=False,
        )
        specs = PolicySpecs.from_env(spec.make())

        def truth(policy, final=True, seed=seed):
            return evaluate(policy, spec, num_users=args.eval_users // 4, seed=10_000 + seed)

        for algorithm in ("bc", "drpo"):
            result = trained(algorithm, logs[:].reshape(-1), specs, args, seed, truth)
            for e in off_policy_evaluate(
                result["policy"], logs, num_bootstrap=args.bootstrap, seed=seed
            ).values():
                rows.append(
                    {
                        "seed": seed,
                        "policy": algorithm,
                        "truth": result["metrics"]["return"],
                        **e.to_dict(),
                    }
                )
    return rows


def session_markdown(rows: list[dict]) -> str:
    lines = [
        "| seed | policy | true return | estimator | estimate | 95% interval | covers | ESS |",
        "|---:|---|---:|---|---:|---:|---|---:|",
    ]
    for r in rows:
        ess = r["diagnostics"].get("ess")
        lines.append(
            f"| {r['seed']} | {r['policy']} | {r['truth']:.3f} | {r['estimator']} | "
            f"{r['value']:.3f} | [{r['low']:.3f}, {r['high']:.3f}] | "
            f"{'yes' if r['low'] <= r['truth'] <= r['high'] else 'no'} | "
            f"{'' if ess is None else f'{ess:.1f}'} |"
        )
    return "\n".join(lines)


def obd_markdown(result: dict) -> str:
    truth = result["on_policy"]
    lines = [
        f"BTS on-policy mean click (BTS logs): {truth['value']:.5f} "
        f"[{truth['low']:.5f}, {truth['high']:.5f}]",
        "",
        "| estimator (random logs) | estimate | 95% interval | covers on-policy | ESS | max w |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, e in result["estimates"].items():
        d = e["diagnostics"]
        covers = e["low"] <= truth["value"] <= e["high"]
        lines.append(
            f"| {name} | {e['value']:.5f} | [{e['low']:.5f}, {e['high']:.5f}] | "
            f"{'yes' if covers else 'no'} | {d.get('ess', float('nan')):.0f} | "
            f"{d.get('max_weight', float('nan')):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="RecSimBandit")
    parser.add_argument("--scenarios", default="medium,extreme,noise-0,noise-40,noise-80")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--log-samples", type=int, default=5000)
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=300, help="training steps of bc and drpo")
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    parser.add_argument("--plot", type=Path, default=Path("docs/ope_validation.png"))
    parser.add_argument("--json", type=Path, help="write every estimate here")
    parser.add_argument("--obd", action="store_true", help="only the Open Bandit Dataset check")
    parser.add_argument(
        "--sessions", action="store_true", help="only the session check (UserSession)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.obd:
        print(obd_markdown(obd_check()))
        return
    if args.sessions:
        print(session_markdown(session_check(args)))
        return
    started = time.perf_counter()
    records = run(args)
    rows = summary(records)
    print(markdown(rows))
    print(f"total {time.perf_counter() - started:.0f} s")
    plot(records, args.plot)
    print(f"wrote {args.plot}")
    if args.json:
        args.json.write_text(json.dumps({"summary": rows, "estimates": records}, indent=1))


if __name__ == "__main__":
    main()
