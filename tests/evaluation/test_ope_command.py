"""``drpo-rl ope`` and ``drpo-rl bench --ope`` on a tiny benchmark folder."""

import csv
import json

import pytest

from drpo_rl.benchmark import make_config, run_benchmark
from drpo_rl.benchmark.policies import load_trained_run
from drpo_rl.cli import main
from drpo_rl.data import OfflineLogs, generate_logs
from drpo_rl.evaluation import off_policy_evaluate


@pytest.fixture(scope="module")
def bench_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    config = make_config("tiny", algorithms=("drpo",), references=("oracle",))
    run_benchmark(config, out, progress=False, echo=lambda *args: None)
    return out


def test_ope_command_writes_json_and_csv_matching_the_api(bench_folder, tmp_path, capsys):
    run_path = bench_folder / "runs/medium/drpo/seed-0.json"
    logs_path = bench_folder / "logs/medium/seed-0"
    argv = ["ope", "--run", str(run_path), "--logs", str(logs_path), "--estimators", "snips,dr"]
    argv += [
        "--bootstrap",
        "200",
        "--json",
        str(tmp_path / "o.json"),
        "--csv",
        str(tmp_path / "o.csv"),
    ]
    assert main(argv) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "snips" in printed and "online value in the benchmark" in printed
    document = json.loads((tmp_path / "o.json").read_text())
    assert list(document["estimates"]) == ["snips", "dr"]
    run = load_trained_run(run_path)
    assert document["online_value"] == run.record["metrics"]["reward"]
    direct = off_policy_evaluate(
        run.policy,
        OfflineLogs(logs_path),
        estimators=("snips", "dr"),
        num_bootstrap=200,
        env=run.env_spec,
    )
    for name, e in direct.items():
        assert document["estimates"][name] == e.to_dict()
    with open(tmp_path / "o.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["estimator"] for r in rows] == ["snips", "dr"]
    assert float(rows[0]["value"]) == pytest.approx(direct["snips"].value)
    assert float(rows[0]["ess"]) == pytest.approx(direct["snips"].diagnostics["ess"])


def test_ope_command_refuses_logs_of_another_world(bench_folder, tmp_path, capsys):
    generate_logs(
        "RecSimBandit", "medium", 300, path=tmp_path / "l", seed=0, num_items=40, progress=False
    )
    argv = [
        "ope",
        "--run",
        str(bench_folder / "runs/medium/drpo/seed-0.json"),
        "--logs",
        str(tmp_path / "l"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "logs were generated in another world" in err
    assert "num_items: stored 40, requested 100" in err


def test_bench_ope_adds_the_estimate_beside_the_online_value(bench_folder, capsys):
    argv = [
        "bench",
        "--preset",
        "tiny",
        "--algorithms",
        "drpo",
        "--references",
        "oracle",
        "--out",
        str(bench_folder),
        "--no-progress",
        "--no-plots",
        "--workers",
        "1",
        "--ope",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Online value vs off-policy estimate (dr" in printed
    with open(bench_folder / "results_ope.csv") as f:
        rows = list(csv.DictReader(f))
    # The oracle has no weights (it reads privileged truth the logs do not keep).
    assert [(r["algorithm"], r["seed"]) for r in rows] == [("drpo", "0")]
    run = load_trained_run(bench_folder / "runs/medium/drpo/seed-0.json")
    assert float(rows[0]["online"]) == run.record["metrics"]["reward"]
    assert float(rows[0]["low"]) <= float(rows[0]["ope"]) <= float(rows[0]["high"])
