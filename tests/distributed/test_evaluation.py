"""Evaluation over TorchRL's DistributedCollector: 2 workers give the numbers of 1 process."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from drpo_rl.algorithms import build
from drpo_rl.distributed.evaluation import evaluate_sharded
from drpo_rl.distributed.shards import shard_seed
from drpo_rl.evaluation import evaluate, evaluation_env
from drpo_rl.models import PolicySpecs
from envs import EnvSpec

SPEC = EnvSpec("RecSimBanditDiscrete", {"num_items": 20})


@pytest.fixture
def policy():
    torch.manual_seed(0)
    env = SPEC.make()
    yield build("bc", PolicySpecs.from_env(env), num_cells=8).policy
    # A failed collector must not leave this test process in a process group.
    if dist.is_initialized():
        dist.destroy_process_group()


def test_two_collector_workers_give_the_numbers_of_one_process(policy):
    options = {"num_users": 300, "shards": 2, "batch_size": 64, "seed": 3}
    alone = evaluate_sharded(policy, SPEC, workers=1, **options)
    spread = evaluate_sharded(policy, SPEC, workers=2, **options)
    assert spread == alone
    assert alone["num_users"] == 300 and 0 < alone["reward_ci95"] < alone["reward"]
    assert not dist.is_initialized()


def test_one_group_is_the_plain_evaluation_of_its_seed(policy):
    seed = shard_seed(3, 0)
    env = evaluation_env(SPEC, 100, seed=seed, batch_size=64)
    expected = evaluate(policy, env, num_users=100, seed=seed)
    assert evaluate_sharded(policy, SPEC, num_users=100, shards=1, batch_size=64, seed=3) == (
        expected
    )


def test_workers_must_be_one_or_one_per_group(policy):
    with pytest.raises(ValueError, match=r"workers: expected 1 or shards \(2\), got 3"):
        evaluate_sharded(policy, SPEC, num_users=10, shards=2, workers=3)
