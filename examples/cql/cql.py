"""CQL (TorchRL's ``DiscreteCQLLoss`` / ``CQLLoss``) on mixed-quality offline logs.

The Q networks and policy (greedy over item Q values, or a Gaussian actor for embedding
actions), the CQL loss, Adam and the target-Q soft update come from the ``drpo_rl``
registry; the training program, top to bottom, is ``examples/offline.py``.

    python examples/cql/cql.py                                     # item ids, medium logs
    python examples/cql/cql.py env.name=RecSimBandit               # CQLLoss, Gaussian actor
    python examples/cql/cql.py env.device=cuda compile.compile=true
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Run as a script, Python puts only this file's folder on sys.path; the offline training
# program that drpo/, iql/ and cql/ share is examples/offline.py, one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import offline  # noqa: E402


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    offline.main(cfg, "cql")


if __name__ == "__main__":
    main()
