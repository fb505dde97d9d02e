"""DRPO on mixed-quality offline logs of simulated users.

The variant is a config group (``loss=drpo | drpo-exp | adapt-bc | drpo-q``, files in
``loss/``); the training program, top to bottom, is ``examples/offline.py``. DRPO logs
kappa, the filter threshold, the kept fraction and the weights' effective sample size.

    python examples/drpo/drpo.py                                   # DRPO, medium logs
    python examples/drpo/drpo.py loss=drpo-exp logs.scenario=extreme
    python examples/drpo/drpo.py env.device=cuda compile.compile=true
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
    offline.main(cfg, "drpo")


if __name__ == "__main__":
    main()
