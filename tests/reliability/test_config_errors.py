"""Configuration errors stop before any work starts, with a message listing valid choices.

Covers the four entry points a user configures: ``envs.make_env``,
``drpo_rl.algorithms.build``, ``drpo_rl.data.generate_logs`` and
``drpo_rl.evaluation.evaluate``: unknown names, negative sizes, devices that do not exist.
"Before any work" is checked where work is observable: nothing written to disk, no env
built, no network built.
"""

import os

import pytest
import torch

import envs
import envs.devices
import envs.factory
from drpo_rl.algorithms import build, list_algorithms
from drpo_rl.algorithms import registry as registry_module
from drpo_rl.data import generate_logs
from drpo_rl.evaluation import evaluate
from drpo_rl.models import PolicySpecs
from envs.devices import available_devices, check_device

SPECS = PolicySpecs(obs_dim=4, action_dim=2)
ENV = "RecSimBanditDiscrete"
SMALL = {"num_items": 20}
# Devices absent on every machine: no CPU index but 0, no device type but cpu/cuda, and a
# CUDA index past any machine's GPU count.
ABSENT_DEVICES = ["cpu:7", "tpu", "meta", "cuda:99"]
if not torch.cuda.is_available():
    ABSENT_DEVICES.append("cuda")
VALID_LISTING = "valid devices here: " + ", ".join(available_devices())


# ------------------------------------------------------------------------- devices
@pytest.mark.parametrize("device", ABSENT_DEVICES)
def test_absent_devices_are_refused_listing_the_valid_ones(device):
    with pytest.raises(ValueError, match=f"device '{device}'.*{VALID_LISTING}$"):
        check_device(device)
    with pytest.raises(ValueError, match=f"device '{device}'"):
        check_device(torch.device(device) if device != "tpu" else device)


def test_present_devices_are_returned_as_torch_devices():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device("cpu:0") == torch.device("cpu:0")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    for name in available_devices():
        assert check_device(name) == torch.device(name)
    assert available_devices()[0] == "cpu"


@pytest.mark.parametrize("device", ABSENT_DEVICES)
def test_make_env_refuses_an_absent_device_before_building(device, monkeypatch):
    built = []
    monkeypatch.setitem(
        envs.factory.ENV_CLASSES,
        ENV,
        type("Spy", (), {"__init__": lambda *a, **k: built.append(1)}),
    )
    with pytest.raises(ValueError, match=VALID_LISTING):
        envs.make_env(ENV, device=device)
    assert built == []


# ----------------------------------------------------------------------- make_env
def test_make_env_names_and_sizes():
    with pytest.raises(
        ValueError, match=r"unknown environment 'Nope'; valid names: \['RecSimBandit'"
    ):
        envs.make_env("Nope")
    for num_envs in (0, -3, 2.5, True):
        with pytest.raises(
            ValueError, match=f"num_envs: expected an integer >= 1, got {num_envs!r}"
        ):
            envs.make_env(ENV, num_envs=num_envs)
    with pytest.raises(ValueError, match="nonexistent_field"):
        envs.make_env(ENV, nonexistent_field=1)


# -------------------------------------------------------------------------- build
def test_build_refuses_bad_names_and_options_before_building(monkeypatch):
    built = []
    monkeypatch.setattr(registry_module, "PolicySpecs", type("Spy", (), {"of": built.append}))
    with pytest.raises(
        ValueError, match="unknown algorithm 'sac'; valid names: " + ", ".join(list_algorithms())
    ):
        build("sac", SPECS)
    cases = {
        "batch_size": (-1, "batch_size: expected an integer >= 1, got -1"),
        "num_cells": (0, "num_cells: expected an integer >= 1, got 0"),
        "depth": (1.5, "depth: expected an integer >= 1, got 1.5"),
        "lr": (-3e-4, "lr: expected a finite number > 0, got -0.0003"),
        "head": ("mlp", "head: expected one of per_item, two_tower, got 'mlp'"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            build("drpo", SPECS, **{key: value})
    with pytest.raises(ValueError, match="lr: expected a finite number > 0, got inf"):
        build("bc", SPECS, lr=float("inf"))
    assert built == []


def test_build_batch_size_zero_and_bool_are_refused():
    for value in (0, True):
        with pytest.raises(
            ValueError, match=f"batch_size: expected an integer >= 1, got {value!r}"
        ):
            build("awr", SPECS, batch_size=value)
    assert build("awr", SPECS, batch_size=1, num_cells=4).batch_size == 1


# ------------------------------------------------------------------- generate_logs
def _generate(path, **changes):
    kwargs = dict(path=path, seed=0, progress=False, **SMALL)
    args = {"env_name": ENV, "scenario": "medium", "num_samples": 64}
    for key in list(changes):
        if key in args:
            args[key] = changes.pop(key)
    kwargs.update(changes)
    return generate_logs(args["env_name"], args["scenario"], args["num_samples"], **kwargs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"env_name": "Nope"}, r"unknown environment 'Nope'; valid names: \['RecSimBandit'"),
        (
            {"scenario": "mediocre"},
            r"unknown scenario 'mediocre'; valid scenarios: \['clean', 'medium'",
        ),
        ({"num_samples": -5}, "num_samples: expected an integer >= 1, got -5"),
        ({"num_envs": -2}, "num_envs: expected an integer >= 1 or None, got -2"),
        ({"device": "cpu:7"}, "device 'cpu:7'.*" + VALID_LISTING),
        *(
            [({"device": "cuda"}, "device 'cuda'.*" + VALID_LISTING)]
            if not torch.cuda.is_available()
            else []
        ),
    ],
    ids=lambda v: str(v)[:30],
)
def test_generate_logs_refuses_bad_settings_before_writing(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        _generate(tmp_path / "logs", **changes)
    assert os.listdir(tmp_path) == []


def test_generate_logs_refuses_an_unknown_device_type_with_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="device 'tpu'.*" + VALID_LISTING):
        _generate(tmp_path / "logs", device="tpu")


def test_generate_logs_refuses_a_negative_batch_size_before_writing(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        _generate(tmp_path / "logs", batch_size=-5)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------ evaluate
def _policy():
    env = envs.make_env(ENV, num_envs=2, seed=0, **SMALL)
    from drpo_rl.evaluation import oracle_policy

    return oracle_policy(env)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env": "Nope"}, r"unknown environment 'Nope'; valid names: \['RecSimBandit'"),
        ({"num_users": -1}, "num_users: expected an integer >= 1, got -1"),
        ({"batch_size": -4}, "batch_size: expected an integer >= 1 or None, got -4"),
        ({"max_steps": 0}, "max_steps: expected an integer >= 1 or None, got 0"),
        ({"device": "cpu:7"}, "device 'cpu:7'.*" + VALID_LISTING),
        *(
            [({"device": "cuda"}, "device 'cuda'.*" + VALID_LISTING)]
            if not torch.cuda.is_available()
            else []
        ),
    ],
    ids=lambda v: str(v)[:30],
)
def test_evaluate_refuses_bad_settings(kwargs, message):
    args = {"env": ENV, "num_users": 8, "env_overrides": SMALL, **kwargs}
    with pytest.raises(ValueError, match=message):
        evaluate(_policy(), args.pop("env"), **args)


def test_evaluate_refuses_an_unknown_device_type_with_a_value_error():
    with pytest.raises(ValueError, match="device 'tpu'.*" + VALID_LISTING):
        evaluate(_policy(), ENV, num_users=8, device="tpu", env_overrides=SMALL)
