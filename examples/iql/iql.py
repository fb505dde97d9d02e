"""IQL (TorchRL's ``IQLLoss``) on mixed-quality offline logs of simulated users.

The actor, Q and V networks, ``IQLLoss`` (``DiscreteIQLLoss`` for item ids), Adam and the
target-Q soft update come from the ``drpo_rl`` registry; the training program, top to
bottom, is ``examples/offline.py``.

    python examples/iql/iql.py                                     # medium logs, CPU
    python examples/iql/iql.py env.name=RecSimBanditDiscrete       # DiscreteIQLLoss
    python examples/iql/iql.py env.device=cuda compile.compile=true
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
    offline.main(cfg, "iql")


if __name__ == "__main__":
    main()
