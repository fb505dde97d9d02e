"""The command line's one flag vocabulary: one default env, one KEY=VALUE reader, clear errors."""

import argparse

import pytest

from drpo_rl.cli import build_parser, main
from drpo_rl.commands.options import DEFAULT_ENV, hparam, key_value


def test_every_sub_command_has_the_same_default_env_and_env_set():
    parser = build_parser()
    cases = {
        "bench": ["bench"],
        "generate": ["generate", "logs"],
        "evaluate": ["evaluate", "--oracle"],
    }
    assert DEFAULT_ENV == "RecSimBandit"
    for command, argv in cases.items():
        args = parser.parse_args(argv)
        assert args.env == DEFAULT_ENV, command
        assert args.env_overrides == [], command
        with_set = parser.parse_args([*argv, "--env-set", "num_items=7", "--env-set", "x=a"])
        assert with_set.env_overrides == [("num_items", 7), ("x", "a")], command


def test_set_is_only_for_algorithm_hyper_parameters_in_bench():
    args = build_parser().parse_args(["bench", "--set", "drpo.kappa=0.3", "--set", "bc.head=x"])
    assert args.hparams == [("drpo", "kappa", 0.3), ("bc", "head", "x")]
    assert args.env_overrides == []


def test_key_value_reads_json_values_else_strings_and_names_the_expected_form():
    assert key_value("a=1") == ("a", 1)
    assert key_value("a=true") == ("a", True)
    assert key_value("a=1e-3") == ("a", 0.001)
    assert key_value("a=x=y") == ("a", "x=y")
    with pytest.raises(argparse.ArgumentTypeError, match="expected KEY=VALUE .* got '=1'"):
        key_value("=1")
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected ALGO.KEY=VALUE .* 'kappa=1'"):
        hparam("kappa=1")


def test_env_set_with_a_dotted_key_points_to_set(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--env-set", "drpo.kappa=0.3"])
    assert "algorithm hyper-parameters go to --set ALGO.KEY=VALUE" in capsys.readouterr().err


def test_unknown_env_and_env_field_are_one_line_errors(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "a"), "--env", "Nope", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drpo-rl generate: error: --env Nope / --env-set: unknown environment")
    assert main(["evaluate", "--oracle", "--env-set", "num_itemz=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drpo-rl evaluate: error: --env RecSimBandit / --env-set:")
    assert "num_itemz" in err
    assert not (tmp_path / "a").exists()


def test_evaluate_oracle_on_another_env_and_its_config(capsys):
    import json

    argv = ["evaluate", "--oracle", "--num-users", "32", "--json", "--env", "RecSimBanditDiscrete"]
    assert main([*argv, "--env-set", "num_items=12"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_users"] == 32 and metrics["hit_rate"] == 1.0
    # 12 items: the oracle recommends at least 1/12 of the catalogue, in steps of 1/12.
    assert round(metrics["coverage"] * 12, 6) == round(metrics["coverage"] * 12)


def test_building_the_command_line_imports_no_torch():
    import subprocess
    import sys

    code = "import sys; from drpo_rl.cli import build_parser; build_parser(); print(sorted("
    code += "m for m in ('torch', 'envs', 'tensordict') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_evaluate_refuses_env_set_for_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "run.json"), "--env-set", "num_items=3"]) == 2
    err = capsys.readouterr().err
    assert "--env-set applies to --oracle; a RUN is evaluated on its env" in err
