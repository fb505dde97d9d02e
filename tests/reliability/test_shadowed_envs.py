"""A user's own ``envs`` folder must not be taken for drpo-rl's (issue 16, item 12).

Each case runs a fresh interpreter in a working directory holding the user's folder, as
``python script.py`` or ``python -c`` there would: the working directory comes first on
``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import drpo_rl

REPO = Path(drpo_rl.__file__).resolve().parent.parent


def _python(cwd: Path, code: str, *flags: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("PYTHONSAFEPATH", None)
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("kind", ["package", "module"])
@pytest.mark.parametrize("first", ["drpo_rl", "envs"], ids=["import-drpo_rl", "envs-first"])
def test_a_users_envs_in_the_working_directory_is_named_with_the_fix(tmp_path, kind, first):
    if kind == "package":
        (tmp_path / "envs").mkdir()
        (tmp_path / "envs" / "__init__.py").write_text("MINE = True\n")
        shadow = tmp_path / "envs"
    else:
        (tmp_path / "envs.py").write_text("MINE = True\n")
        shadow = tmp_path / "envs.py"
    code = "import envs, drpo_rl" if first == "envs" else "import drpo_rl"
    done = _python(tmp_path, code)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"drpo_rl.ShadowedPackageError: 'import envs' finds {shadow.resolve()}, not drpo-rl's "
        f"simulated users at {REPO / 'envs'}"
    )
    assert "Rename your 'envs'" in last and "-P" in last


def test_the_suggested_python_dash_p_imports_drpo_rls_envs(tmp_path):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "__init__.py").write_text("MINE = True\n")
    done = _python(tmp_path, "import drpo_rl, envs; print(envs.__file__)", "-P")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(REPO / "envs" / "__init__.py")


def test_a_folder_named_envs_without_init_does_not_shadow(tmp_path):
    (tmp_path / "envs").mkdir()  # data, not a package: the regular package wins
    done = _python(tmp_path, "import drpo_rl, envs; print(envs.__file__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(REPO / "envs" / "__init__.py")
