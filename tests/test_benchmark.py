"""The benchmark pipeline on a tiny grid: outputs, resume, reproducibility, early errors."""

import collections
import csv
import json

import pytest

import drpo_rl.benchmark
import drpo_rl.benchmark.grid
import drpo_rl.benchmark.monitoring
import drpo_rl.benchmark.plots
import drpo_rl.benchmark.policies
import drpo_rl.benchmark.pool
import drpo_rl.benchmark.presets
import drpo_rl.benchmark.results
import drpo_rl.benchmark.run
import drpo_rl.benchmark.store
import drpo_rl.benchmark.training
from drpo_rl.benchmark import make_config, run_benchmark, write_report
from drpo_rl.benchmark.plots import plot_noise_sweep, plot_phantom_monitor
from drpo_rl.benchmark.store import ResultStore, RunKey
from drpo_rl.cli import main

TINY = {
    "steps": 8,
    "batch_size": 32,
    "log_samples": 400,
    "eval_users": 300,
    "curve_users": 100,
    "curve_points": 2,
}


def tiny_config(**changes):
    return make_config("tiny", **{**TINY, **changes})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One tiny benchmark (1 scenario, bc + drpo + the 3 references, 1 seed), run once."""
    out = tmp_path_factory.mktemp("bench")
    messages = []
    report = run_benchmark(tiny_config(), out, progress=False, echo=messages.append)
    return report, messages


def test_tiny_benchmark_writes_csv_json_markdown_and_plots(finished):
    report, messages = finished
    assert messages == []
    assert [str(k) for k in report.ran] == [
        "medium/oracle/seed-0",
        "medium/behaviour/seed-0",
        "medium/bc-expert/seed-0",
        "medium/bc/seed-0",
        "medium/drpo/seed-0",
    ]
    paths = write_report(report, plots=True)
    names = {p.name for p in paths}
    assert {"results.csv", "results.json", "results.md", "reward.png"} <= names
    assert "learning_curves.png" in names and "phantom_gradients.png" in names
    for path in paths:
        assert path.stat().st_size > 0
    rows = list(csv.DictReader((report.out_dir / "results.csv").read_text().splitlines()))
    assert [(r["algorithm"], r["kind"]) for r in rows] == [
        ("oracle", "reference"),
        ("behaviour", "reference"),
        ("bc-expert", "reference"),
        ("bc", "learner"),
        ("drpo", "learner"),
    ]
    by_name = {r["algorithm"]: r for r in rows}
    assert float(by_name["oracle"]["hit_rate"]) == 1.0
    assert float(by_name["oracle"]["regret"]) == pytest.approx(0.0, abs=1e-6)
    for row in rows:
        assert float(row["ecpm"]) == pytest.approx(5 * float(row["reward"]))
        assert int(row["num_users"]) == 300
    # The mixed logs are far from optimal and the oracle is the bound of everything.
    assert float(by_name["behaviour"]["reward"]) < float(by_name["oracle"]["reward"]) - 0.2
    assert all(float(r["reward"]) <= float(by_name["oracle"]["reward"]) + 0.02 for r in rows)
    saved = json.loads((report.out_dir / "results.json").read_text())
    assert saved["config"]["steps"] == 8 and len(saved["runs"]) == 5
    drpo = next(r for r in saved["runs"] if r["algorithm"] == "drpo")
    assert [p["step"] for p in drpo["curve"]] == [4, 8]
    assert "eval_reward" in drpo["curve"][0] and "kappa" in drpo["curve"][0]
    assert [p["step"] for p in drpo["monitor"]] == [4, 8]
    # DRPO's weights are never negative: no repulsive gradient at all.
    assert all(p["frac_negative"] == 0 and p["grad_loc_neg"] == 0 for p in drpo["monitor"])
    # BC on expert rows trained on the expert share of the logs only (10% in "medium").
    expert = next(r for r in saved["runs"] if r["algorithm"] == "bc-expert")
    assert 0 < expert["train_rows"] < 0.25 * 400
    table = (report.out_dir / "results.md").read_text()
    assert table.startswith("| algorithm | medium reward | medium eCPM |")
    assert "| oracle (reference) |" in table


def test_rerun_skips_finished_runs_with_identical_results(finished):
    report, _ = finished
    messages = []
    again = run_benchmark(tiny_config(), report.out_dir, progress=False, echo=messages.append)
    assert again.ran == [] and len(again.skipped) == 5
    assert len(messages) == 1 and "skipping 5 finished run(s)" in messages[0]
    assert "medium/drpo/seed-0" in messages[0]
    assert again.records == report.records


def test_interrupted_benchmark_resumes_the_missing_runs_only(finished, tmp_path, monkeypatch):
    report, _ = finished
    calls = []
    real_train = drpo_rl.benchmark.run.train

    class Killed(Exception):
        """Stands for the process dying in the middle of a run."""

    def dies_at_drpo(algorithm, *args, **kwargs):
        calls.append(algorithm)
        if algorithm == "drpo":
            raise Killed
        return real_train(algorithm, *args, **kwargs)

    monkeypatch.setattr(drpo_rl.benchmark.run, "train", dies_at_drpo)
    with pytest.raises(Killed):
        run_benchmark(tiny_config(), tmp_path, progress=False, echo=lambda s: None)
    assert calls == ["bc", "bc", "drpo"]  # bc-expert trains BC too
    store = ResultStore(tmp_path)
    assert store.has(RunKey("medium", "bc", 0)) and not store.has(RunKey("medium", "drpo", 0))
    assert not list(tmp_path.rglob("*.tmp"))
    monkeypatch.setattr(drpo_rl.benchmark.run, "train", real_train)
    messages = []
    resumed = run_benchmark(tiny_config(), tmp_path, progress=False, echo=messages.append)
    assert [str(k) for k in resumed.ran] == ["medium/drpo/seed-0"]
    assert "skipping 4 finished run(s)" in messages[0]
    # Same seed, same numbers: the resumed grid equals the uninterrupted one.
    assert [r["metrics"] for r in resumed.records] == [r["metrics"] for r in report.records]


def test_a_benchmark_builds_each_env_once_and_validates_its_config_once(tmp_path, monkeypatch):
    import envs.simulator
    from drpo_rl.benchmark.presets import BenchmarkConfig

    built = collections.Counter()  # constructions by number of simulated users
    real_init = envs.simulator.SimulatedUsersEnv.__init__

    def counted_init(self, config, *, num_envs=1, **kwargs):
        built[num_envs] += 1
        real_init(self, config, num_envs=num_envs, **kwargs)

    validated = []
    real_validate = BenchmarkConfig.validate

    def counted_validate(self):
        validated.append(self)
        real_validate(self)

    monkeypatch.setattr(envs.simulator.SimulatedUsersEnv, "__init__", counted_init)
    monkeypatch.setattr(BenchmarkConfig, "validate", counted_validate)
    report = run_benchmark(tiny_config(), tmp_path, progress=False, echo=lambda s: None)
    assert len(report.ran) == 5 and len(validated) == 1
    # generate_logs: the 400-user logging env. The five runs share a one-user env (specs,
    # oracle, behaviour) and one env per evaluation size: 300 users (final), 100 (curve).
    assert built == {1: 1, 400: 1, 300: 1, 100: 1}


def test_same_seed_same_numbers_other_seed_other_numbers(finished, tmp_path):
    report, _ = finished
    config = tiny_config(algorithms=("drpo",), references=())
    first = run_benchmark(config, tmp_path / "a", progress=False, echo=lambda s: None)
    other = run_benchmark(
        tiny_config(algorithms=("drpo",), references=(), seeds=(1,)),
        tmp_path / "b",
        progress=False,
        echo=lambda s: None,
    )
    reference = next(r for r in report.records if r["algorithm"] == "drpo")
    assert first.records[0]["metrics"] == reference["metrics"]
    assert first.records[0]["curve"] == reference["curve"]
    assert other.records[0]["metrics"]["reward"] != reference["metrics"]["reward"]


def test_other_settings_in_the_same_folder_are_refused(finished):
    report, _ = finished
    with pytest.raises(ValueError, match="steps: stored 8, requested 9"):
        run_benchmark(tiny_config(steps=9), report.out_dir, progress=False)


def test_bench_command_reports_a_folder_of_other_settings_without_a_traceback(finished, capsys):
    report, _ = finished
    out = str(report.out_dir)
    assert main(["bench", "--preset", "tiny", "--steps", "9", "--out", out, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drpo-rl bench: error: output folder")
    assert "steps: stored 8, requested 9" in err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"algorithms": ("drpo", "nope")}, r"unknown algorithm\(s\) \['nope'\]; valid .*drpo"),
        ({"algorithms": ("ppo",)}, r"unknown algorithm\(s\) \['ppo'\]"),
        ({"scenarios": ("medium", "noise-95")}, "unknown scenario 'noise-95'; valid scenarios"),
        ({"references": ("oracle", "god")}, r"unknown reference row\(s\) \['god'\]"),
        ({"device": "cuda:7"}, "cuda:7"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"seeds": (0, 0)}, "seeds has duplicates"),
        ({"hparams": {"awr": {"beta": 1.0}}}, r"hparams given for algorithm\(s\) \['awr'\]"),
    ],
)
def test_bad_settings_fail_before_any_work(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_unknown_preset_and_sweep_are_refused():
    with pytest.raises(ValueError, match="unknown preset 'huge'; valid presets: default"):
        make_config("huge")
    with pytest.raises(ValueError, match="unknown sweep 'kappa'; valid sweeps: noise"):
        make_config("tiny", sweep="kappa")
    assert make_config("tiny", sweep="noise").scenarios[::4] == ("noise-0", "noise-40", "noise-80")


def test_cli_rejects_bad_names_without_creating_the_output(tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["bench", "--preset", "tiny", "--algorithms", "drpo,dqn", "--out", str(out)])
    assert code == 2
    assert "unknown algorithm(s) ['dqn']" in capsys.readouterr().err
    assert not out.exists()


def test_cli_bench_runs_and_prints_the_table(tmp_path, capsys):
    args = ["bench", "--preset", "tiny", "--algorithms", "bc", "--references", "oracle"]
    args += ["--steps", "4", "--log-samples", "300", "--eval-users", "100", "--seeds", "1"]
    args += ["--out", str(tmp_path), "--no-progress", "--no-plots", "--workers", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Online reward" in printed and "oracle (ref)" in printed and "bc" in printed
    assert "2 run(s) done, 0 skipped" in printed
    assert (tmp_path / "results.csv").exists() and not (tmp_path / "reward.png").exists()


def test_cli_env_set_changes_the_simulated_users_of_logs_and_evaluation(tmp_path, capsys):
    args = ["bench", "--preset", "tiny", "--algorithms", "bc", "--references", "oracle"]
    args += ["--steps", "2", "--log-samples", "200", "--eval-users", "100", "--seeds", "1"]
    args += ["--out", str(tmp_path), "--no-progress", "--no-plots", "--workers", "1"]
    assert main([*args, "--env-set", "num_items=20", "--env-set", "reward_noise=0"]) == 0
    settings = json.loads((tmp_path / "benchmark.json").read_text())
    assert settings["env_overrides"] == {"num_items": 20, "reward_noise": 0}
    logs = json.loads((tmp_path / "logs" / "medium" / "seed-0" / "metadata.json").read_text())
    assert logs["env"]["config"]["num_items"] == 20
    assert logs["env"]["config"]["reward_noise"] == 0
    oracle = ResultStore(tmp_path).load(RunKey("medium", "oracle", 0))["metrics"]
    # Noiseless rewards: the oracle's observed reward is its latent reward.
    assert oracle["reward"] == pytest.approx(oracle["latent_reward"])
    capsys.readouterr()
    # A field the config does not have: a one-line error naming the valid fields.
    assert main([*args, "--env-set", "nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config field(s) ['nope']" in err and "reward_noise" in err


def _sweep_records():
    records = []
    for noise, rewards in ((0, (0.8, 0.5)), (40, (0.7, 0.4)), (80, (0.6, 0.2))):
        for algorithm, reward in zip(("drpo", "bc"), rewards, strict=True):
            for seed in (0, 1):
                records.append(
                    {
                        "scenario": f"noise-{noise}",
                        "algorithm": algorithm,
                        "seed": seed,
                        "kind": "learner",
                        "metrics": {"reward": reward + 0.01 * seed},
                        "monitor": [{"step": 10, "grad_loc_neg": 0.1, "grad_loc_pos": 0.2}],
                    }
                )
    return records


def test_noise_sweep_and_phantom_plots(tmp_path):
    records = _sweep_records()
    assert plot_noise_sweep(records, tmp_path / "sweep.png").stat().st_size > 0
    assert plot_noise_sweep(records[:4], tmp_path / "one.png") is None  # one noise level
    assert not (tmp_path / "one.png").exists()
    assert plot_phantom_monitor(records, tmp_path / "phantom.png").stat().st_size > 0
    assert plot_phantom_monitor(records, tmp_path / "none.png", algorithms=("apg",)) is None


def test_evaluate_command_reproduces_a_runs_benchmark_number(finished, capsys):
    report, _ = finished
    run = report.out_dir / "runs" / "medium" / "drpo" / "seed-0.json"
    assert run.with_suffix(".pt").is_file()
    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics.pop("users_per_second") > 0
    recorded = next(r for r in report.records if r["algorithm"] == "drpo")["metrics"]
    assert metrics == recorded
    assert main(["evaluate", str(run), "--num-users", "50", "--seed", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_users"] == 50


def test_evaluate_command_errors_and_oracle(finished, capsys):
    report, _ = finished
    oracle_run = report.out_dir / "runs" / "medium" / "oracle" / "seed-0.json"
    assert main(["evaluate", str(oracle_run)]) == 2
    assert "no policy weights for run 'oracle'" in capsys.readouterr().err
    assert main(["evaluate", "--oracle", "--num-users", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hit_rate"] == 1.0
