"""The Open Bandit Dataset's Bernoulli Thompson sampling policy (BTS) as a target policy.

OBD logged two policies on the same ZOZOTOWN traffic: uniform random and BTS. BTS drew one
click-rate sample per item from its Beta(alpha, beta) priors and showed the three highest
at positions 1, 2, 3; its priors ship with ``obp`` as data
(``obp/policy/conf/prior_bts.yaml``, read here without importing obp). Its item
distribution at each position has no closed form, so it is estimated by Monte-Carlo (as
obp's ``BernoulliTS.compute_batch_action_dist`` does). As a target policy it reads the row's
position (the first one-hot block of :func:`~drpo_rl.data.parse_obd`'s observation) and
gives that position's item probabilities: estimating it from the random logs and comparing
with BTS's own logged click rate is OPE checked on real logs.

Example:
    >>> probs = bts_item_probs({"alpha": [9.0, 1.0, 1.0], "beta": [1.0, 9.0, 9.0]}, 2,
    ...                        draws=20_000)
    >>> probs.shape, round(probs[0, 0].item(), 2)  # item 0 is almost always shown first
    (torch.Size([2, 3]), 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from tensordict.nn import TensorDictModule
from torchrl.modules import ProbabilisticActor

# Beta draws per batch of the Monte-Carlo estimate.
_DRAWS_PER_BATCH = 100_000


def bts_prior(campaign: str = "all") -> dict[str, list[float]] | None:
    """BTS's Beta priors of ``campaign`` from the installed obp, or None without it.

    Reading the YAML file needs PyYAML (installed with the ``examples`` extra).
    """
    import yaml

    from drpo_rl.data.loaders.obd import obd_sample_path

    sample = obd_sample_path("bts", campaign)
    if sample is None:
        return None
    # .../obp/dataset/obd/bts/<campaign>/<campaign>.csv -> .../obp/policy/conf/
    conf = Path(sample).parents[4] / "policy" / "conf" / "prior_bts.yaml"
    return yaml.safe_load(conf.read_text())[campaign]


def bts_item_probs(
    prior: Mapping[str, list[float]], num_positions: int, *, draws: int = 1_000_000, seed: int = 0
) -> torch.Tensor:
    """float64 ``[positions, items]``: how often BTS shows each item at each position,
    from ``draws`` Monte-Carlo rounds (its error is at most ``0.5 / sqrt(draws)``)."""
    prior_draws = torch.distributions.Beta(
        torch.tensor(prior["alpha"]), torch.tensor(prior["beta"])
    )
    counts = torch.zeros(num_positions, len(prior["alpha"]), dtype=torch.float64)
    # The draws come from their own seed and leave the caller's random stream as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, draws, _DRAWS_PER_BATCH):
            size = min(_DRAWS_PER_BATCH, draws - start)
            top = prior_draws.sample((size,)).topk(num_positions, dim=-1).indices
            for position in range(num_positions):
                counts[position] += torch.bincount(top[:, position], minlength=counts.shape[1])
    return counts / draws


def bts_policy(item_probs: torch.Tensor) -> ProbabilisticActor:
    """A stochastic target policy showing ``item_probs[position]`` at each row's position."""
    log_table = item_probs.log().float()
    positions = item_probs.shape[0]
    module = TensorDictModule(
        lambda observation: log_table[observation[:, :positions].argmax(-1)],
        in_keys=["observation"],
        out_keys=["logits"],
    )
    return ProbabilisticActor(
        module, in_keys=["logits"], distribution_class=torch.distributions.Categorical
    )
