"""The package installs, imports, and its console script answers."""

import subprocess
import sys

import drpo_rl
import envs


def test_packages_import():
    assert drpo_rl.__version__ != "0+unknown", "drpo-rl is not installed (pip install -e .)"
    assert envs.__doc__


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "drpo_rl.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_help_lists_usage():
    result = _run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: drpo-rl" in result.stdout


def test_cli_version_prints_package_version():
    result = _run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"drpo-rl {drpo_rl.__version__}"
