"""``drpo-rl generate`` writes logs, re-opens them, and rejects bad requests without a traceback."""

import pytest

from drpo_rl.cli import main
from drpo_rl.data import OfflineLogs


def test_generate_writes_then_reopens_logs(tmp_path, capsys):
    path = tmp_path / "logs"
    args = ["generate", str(path), "--scenario", "extreme", "--num-samples", "600"]
    args += ["--seed", "3", "--env-set", "num_items=30", "--no-progress"]
    assert main(args) == 0
    first = capsys.readouterr().out
    logs = OfflineLogs.load(path)
    assert len(logs) == 600
    assert logs.metadata["env"]["config"]["num_items"] == 30
    assert logs.metadata["scenario"]["name"] == "extreme"
    assert "600 rows" in first
    reward = logs[:]["next", "reward"].mean().item()
    assert f"mean logged reward {reward:.4f}" in first

    assert main(args) == 0  # same settings: opened, same numbers
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scenario", "bogus"], "unknown scenario 'bogus'"),
        (["--env-set", "num_itemz=3"], "num_itemz"),
    ],
)
def test_generate_rejects_bad_requests(tmp_path, capsys, extra, message):
    code = main(["generate", str(tmp_path / "logs"), "--num-samples", "10", *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("drpo-rl generate: error:")
    assert message in err
    assert not (tmp_path / "logs").exists()


def test_generate_names_the_difference_with_stored_logs(tmp_path, capsys):
    path = str(tmp_path / "logs")
    common = ["--num-samples", "200", "--env-set", "num_items=20", "--no-progress"]
    assert main(["generate", path, "--scenario", "clean", *common]) == 0
    assert main(["generate", path, "--scenario", "medium", *common]) == 2
    assert "scenario.name: stored 'clean', requested 'medium'" in capsys.readouterr().err


def test_old_set_spelling_warns_and_still_sets_the_env_config(tmp_path, capsys):
    path = tmp_path / "logs"
    args = ["generate", str(path), "--num-samples", "50", "--no-progress"]
    with pytest.warns(FutureWarning, match=r"--set KEY=VALUE .* deprecated.*use --env-set"):
        assert main([*args, "--set", "num_items=25"]) == 0
    assert OfflineLogs.load(path).metadata["env"]["config"]["num_items"] == 25
    # Both spellings together: the overrides of both apply.
    with pytest.warns(FutureWarning):
        code = main([*args[:1], str(tmp_path / "b"), *args[2:], "--set", "num_items=25",
                     "--env-set", "num_clusters=3"])  # fmt: skip
    assert code == 0
    config = OfflineLogs.load(tmp_path / "b").metadata["env"]["config"]
    assert (config["num_items"], config["num_clusters"]) == (25, 3)
