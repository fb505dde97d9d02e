"""Off-policy evaluation on real logs: the Open Bandit Dataset sample shipped with obp.

BTS's value estimated from the uniform-random logs must agree with the click rate BTS's own
logs show (the experiment the dataset was published for). Skipped where obp's data or
PyYAML (for BTS's prior file) is not installed.
"""

import pytest
import torch

from drpo_rl.data import parse_obd
from drpo_rl.data.loaders.obd import obd_sample_path
from drpo_rl.evaluation import off_policy_evaluate
from drpo_rl.evaluation.off_policy.obd_bts import bts_item_probs, bts_policy, bts_prior

pytest.importorskip("yaml")
pytestmark = pytest.mark.skipif(
    obd_sample_path("random") is None, reason="obp's Open Bandit Dataset sample is not installed"
)


def test_bts_estimated_from_random_logs_covers_its_on_policy_click_rate():
    random_logs = parse_obd(obd_sample_path("random"))
    bts_logs = parse_obd(obd_sample_path("bts"))
    probs = bts_item_probs(bts_prior("all"), 3, draws=50_000)
    assert probs.shape == (3, random_logs.metadata["num_items"])
    assert torch.allclose(probs.sum(-1), torch.ones(3, dtype=torch.float64))
    out = off_policy_evaluate(
        bts_policy(probs),
        random_logs.data,
        num_items=random_logs.metadata["num_items"],
        deterministic=False,
        estimators=("ips", "snips"),
        num_bootstrap=200,
    )
    on_policy = bts_logs.data["next", "reward"].mean().item()
    for e in out.values():
        assert e.covers(on_policy), (e.estimator, e.low, e.high, on_policy)
    # The random logs' propensities are uniform: each weight is BTS's item probability
    # at the row's position times the number of items.
    position = random_logs.data["position"] - 1
    item = random_logs.data["action"]
    w = probs[position, item] / random_logs.data["behavior_log_prob"].double().exp()
    assert out["ips"].diagnostics["max_weight"] == pytest.approx(w.max().item(), rel=1e-5)
    assert out["ips"].diagnostics["ess"] == pytest.approx(
        (w.sum() ** 2 / w.pow(2).sum()).item(), rel=1e-5
    )
