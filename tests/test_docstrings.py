"""Every public class of the two packages carries a runnable example in its docstring."""

import importlib
import inspect
import pkgutil

import pytest

import drpo_rl
import envs


def _public_classes():
    for package in (drpo_rl, envs):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if inspect.isclass(obj) and not name.startswith("_"):
                    if obj.__module__ == module.__name__:
                        yield f"{module.__name__}.{name}", obj


CLASSES = dict(_public_classes())


def test_the_walk_finds_the_packages_classes():
    assert "drpo_rl.objectives.drpo.DRPOLoss" in CLASSES
    assert "envs.simulator.SimulatedUsersEnv" in CLASSES


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_public_class_has_a_runnable_example(name):
    assert ">>>" in (CLASSES[name].__doc__ or ""), f"{name}: no '>>>' example in its docstring"
