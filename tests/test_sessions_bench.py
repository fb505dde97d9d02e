"""The session benchmark end to end at a tiny size: `drpo-rl bench --env UserSession`, its
preset, its table of session metrics, and its example config."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from drpo_rl.benchmark.presets import MYOPIA_WORLD, PRESETS, make_config
from drpo_rl.benchmark.results import SESSION_COLUMNS
from drpo_rl.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = [
    *("--steps", "4", "--log-samples", "640", "--eval-users", "60", "--seeds", "1"),
    *("--algorithms", "drpo,bc", "--scenarios", "medium", "--references", "oracle,planner"),
    *("--workers", "1", "--no-progress", "--no-plots"),
]


def test_bench_env_usersession_runs_the_session_preset_end_to_end(tmp_path, capsys):
    assert main(["bench", "--env", "UserSession", *TINY, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "Session return" in printed and "planner (ref)" in printed
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["config"]["preset"] == "sessions"
    assert report["config"]["env_overrides"] == MYOPIA_WORLD
    runs = {run["algorithm"]: run for run in report["runs"]}
    assert set(runs) == {"drpo", "bc", "oracle", "planner"}
    assert runs["drpo"]["hparams"]["score"] == "return_to_go"  # the session default
    for run in runs.values():
        metrics = run["metrics"]
        for key in ("return", "return_ci95", "length", "leave_rate", "coverage"):
            assert key in metrics, (run["algorithm"], key)
        expected = runs["planner"]["metrics"]["return"] - metrics["return"]
        assert metrics["return_regret"] == pytest.approx(expected)
    # Myopia loses even at this size: the planner ahead of the greedy oracle.
    assert runs["oracle"]["metrics"]["return_regret"] > 0
    table = (tmp_path / "results.md").read_text().splitlines()
    assert table[0].split(" | ")[2:] == [title for _, title, _ in SESSION_COLUMNS][:-1] + ["ILD |"]
    assert any(line.startswith("| medium | planner (reference) | ") for line in table)


def test_the_sessions_preset_is_the_myopia_world_with_the_paper_s_set():
    config = PRESETS["sessions"]
    assert config.env == "UserSession" and config.sessions
    assert config.scenarios == ("medium", "extreme")
    assert config.algorithms == PRESETS["default"].algorithms
    assert "planner" in config.references


def test_session_only_settings_are_refused_at_config_time():
    with pytest.raises(ValueError, match="reference 'planner': plans sessions of item ids"):
        make_config("tiny", references=("planner",))
    with pytest.raises(ValueError, match="score='return_to_go' needs the logged 'return_to_go'"):
        make_config("tiny", hparams={"drpo": {"score": "return_to_go"}})
    explicit = make_config("tiny", env="UserSession", hparams={"drpo": {"score": "reward"}})
    assert explicit.algorithm_hparams("drpo") == {"score": "reward"}


def test_the_example_config_is_the_benchmark_s_world():
    with initialize_config_dir(str(EXAMPLES / "drpo"), version_base="1.3"):
        cfg = compose("sessions")
    assert cfg.env.name == "UserSession" and dict(cfg.env.config) == MYOPIA_WORLD
    assert cfg.loss.name == "drpo" and cfg.loss.score == "return_to_go"
    assert cfg.logs.num_samples % 256 == 0


@pytest.mark.slow  # a subprocess with hydra: about 35 s on the shared cores
def test_the_example_trains_drpo_on_sessions_at_a_tiny_size(tmp_path):
    import os
    import subprocess
    import sys

    overrides = [
        *("logs.num_samples=1024", "replay_buffer.batch_size=64", "model.num_cells=16"),
        *("optim.gradient_steps=4", "logger.log_interval=2", "logger.eval_iter=4"),
        *("logger.eval_users=50", "logger.backend=null", f"logs.path={tmp_path / 'logs'}"),
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "drpo" / "drpo.py"), "--config-name", "sessions"]
        + overrides,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final evaluation of drpo after 4 steps (50 users)" in proc.stdout
    metadata = json.loads((tmp_path / "logs" / "metadata.json").read_text())
    assert metadata["env"]["config"]["boredom"] == 0.4 and metadata["layout"] == "time_env"
