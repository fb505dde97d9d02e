"""Scenario names and custom weights."""

import pytest

from drpo_rl.data.scenarios import list_scenarios, scenario_name, scenario_weights


def test_named_scenarios_have_the_papers_weights():
    assert scenario_weights("clean") == {"expert": 1.0}
    assert scenario_weights("medium") == {"expert": 0.1, "suboptimal": 0.6, "random": 0.3}
    assert scenario_weights("extreme") == {"expert": 0.05, "suboptimal": 0.05, "random": 0.9}


@pytest.mark.parametrize("percent", [0, 1, 25, 50, 80])
def test_noise_injects_that_share_of_random_into_expert_logs(percent):
    weights = scenario_weights(f"noise-{percent}")
    expected = {"expert": (100 - percent) / 100, "random": percent / 100}
    assert weights == {k: v for k, v in expected.items() if v > 0}
    assert sum(weights.values()) == pytest.approx(1.0)


def test_custom_weights_are_validated_and_zero_weights_dropped():
    assert scenario_weights({"expert": 0.25, "anti_oracle": 0.75, "random": 0}) == {
        "expert": 0.25,
        "anti_oracle": 0.75,
    }
    assert scenario_name({"expert": 1.0}) == "custom"
    assert scenario_name("medium") == "medium"
    with pytest.raises(ValueError, match="summing to 1"):
        scenario_weights({"expert": 0.3})
    with pytest.raises(ValueError, match=r"unknown agents \['bot'\]"):
        scenario_weights({"bot": 1.0})


@pytest.mark.parametrize("name", ["noisy", "noise-", "noise-x", "Medium", "noise--5", "noise-5.5"])
def test_unknown_names_list_the_valid_choices(name):
    with pytest.raises(ValueError, match="valid scenarios") as info:
        scenario_weights(name)
    for valid in ("clean", "medium", "extreme", "noise-<p>"):
        assert valid in str(info.value)


def test_noise_above_80_percent_is_refused():
    with pytest.raises(ValueError, match="from 0 to 80, got 81"):
        scenario_weights("noise-81")
    assert list_scenarios() == ["clean", "medium", "extreme", "noise-<p> (p = 0..80)"]


def test_non_name_non_dict_is_refused():
    with pytest.raises(ValueError, match="expected a name or"):
        scenario_weights(0.5)
