"""envs.fitting, envs.fit_cache, envs.fitted: the matrix-factorisation fit, its caches, and the
data-fitted env."""

import json
import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

import envs
from envs import dynamics, fit_cache, make_env
from envs.catalogue import Catalogue
from envs.common.tables import TableError
from envs.fitted import (
    FitSettings,
    FittedRatings,
    FittedRatingsConfig,
    fit_embeddings,
    fitted_population,
    fitted_world,
    load_or_fit,
    recbole_ml100k_path,
)
from envs.ratings import read_ratings


def low_rank_ratings(path, *, users=80, items=50, rank=3, density=0.6, seed=0):
    """A ratings file whose stars come from a rank-`rank` model, 1..5, with noise."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(users, rank))
    v = rng.normal(size=(items, rank))
    score = u @ v.T / math.sqrt(rank)
    stars = np.clip(np.rint(3 + 1.2 * score + 0.3 * rng.normal(size=score.shape)), 1, 5)
    seen = rng.random(size=score.shape) < density
    rows = [
        f"{a + 1}\t{b + 101}\t{int(stars[a, b])}\t{1000 + a * items + b}"
        for a, b in zip(*np.nonzero(seen), strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory):
    return low_rank_ratings(tmp_path_factory.mktemp("ratings") / "u.data")


SMALL = dict(embedding_dim=4, fit_steps=200, num_clusters=3)


def test_fit_beats_the_global_mean_on_heldout_ratings(ratings_file):
    fit = fit_embeddings(
        read_ratings(ratings_file), FitSettings(embedding_dim=4, steps=300, holdout_fraction=0.2)
    )
    assert fit.rmse["heldout"] < 0.8 * fit.rmse["baseline"], fit.rmse
    assert fit.rmse["train"] < fit.rmse["baseline"]
    assert fit.users.shape == (80, 4) and fit.items.shape == (50, 4)
    assert torch.allclose(fit.users.norm(dim=-1), torch.ones(80))
    assert torch.allclose(fit.items.norm(dim=-1), torch.ones(50))
    assert fit.item_ids.tolist() == list(range(101, 151)) and fit.user_ids[0] == 1
    assert int(fit.item_counts.sum()) == fit.source["rows"] == len(read_ratings(ratings_file))
    assert int(fit.user_counts.sum()) == fit.source["rows"] and fit.user_counts.shape == (80,)
    assert 0.05 < fit.delta < 5


def test_fit_is_reproducible_under_its_seed(ratings_file):
    ratings = read_ratings(ratings_file)
    a = fit_embeddings(ratings, FitSettings(embedding_dim=3, steps=40, seed=5))
    b = fit_embeddings(ratings, FitSettings(embedding_dim=3, steps=40, seed=5))
    c = fit_embeddings(ratings, FitSettings(embedding_dim=3, steps=40, seed=6))
    assert torch.equal(a.users, b.users) and torch.equal(a.items, b.items) and a.delta == b.delta
    assert not torch.equal(a.users, c.users)


def test_fixed_delta_stays_fixed(ratings_file):
    fit = fit_embeddings(read_ratings(ratings_file), FitSettings(steps=20, delta=0.7))
    assert fit.delta == pytest.approx(0.7)


def test_fit_and_predictions_go_through_the_simulator_rule(ratings_file, monkeypatch):
    calls = []
    rule = dynamics.pair_affinity

    def spy(items, users, delta):
        calls.append(items.requires_grad)
        return rule(items, users, delta)

    monkeypatch.setattr(dynamics, "pair_affinity", spy)
    fit = fit_embeddings(read_ratings(ratings_file), FitSettings(embedding_dim=4, steps=7))
    assert sum(calls) >= 7  # every training step's predictions, with gradients
    calls.clear()
    users, items = torch.tensor([0, 7, 79]), torch.tensor([3, 3, 49])
    expected = dynamics.affinity(fit.items, fit.users, fit.delta)[users, items]
    torch.testing.assert_close(fit.predict(users, items), expected, rtol=1e-5, atol=1e-6)
    assert calls == [False]


def test_fit_settings_validation():
    with pytest.raises(ValueError, match="fit setting 'steps': expected an integer >= 1, got 0"):
        FitSettings(steps=0)
    with pytest.raises(ValueError, match="fit setting 'delta': expected None"):
        FitSettings(delta=-1.0)


def test_cache_reuses_the_fit_and_keys_on_settings(ratings_file, tmp_path, monkeypatch):
    settings = FitSettings(embedding_dim=3, steps=30)
    first = load_or_fit(ratings_file, settings=settings, cache_dir=tmp_path)
    (meta_file,) = tmp_path.glob("u-*.json")
    meta = json.loads(meta_file.read_text())
    assert meta["key"]["settings"]["steps"] == 30 and meta["source"]["rows"] > 0
    assert meta_file.with_suffix(".pt").is_file()

    def no_refit(*args, **kwargs):
        raise AssertionError("the cached fit should have been used")

    monkeypatch.setattr(fit_cache, "fit_embeddings", no_refit)
    again = load_or_fit(ratings_file, settings=settings, cache_dir=tmp_path)
    assert torch.equal(first.users, again.users) and torch.equal(first.items, again.items)
    assert again.delta == first.delta and again.rmse == first.rmse
    assert torch.equal(again.user_counts, first.user_counts)
    monkeypatch.undo()
    load_or_fit(ratings_file, settings=FitSettings(embedding_dim=3, steps=31), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("u-*.pt"))) == 2
    assert not list(tmp_path.glob(".*.tmp"))


def test_fitted_world_catalogue(ratings_file):
    fit = fit_embeddings(read_ratings(ratings_file), FitSettings(embedding_dim=4, steps=30))
    cat = fitted_world(fit, num_clusters=3, seed=0)
    assert torch.equal(cat.embeddings, fit.items) and torch.equal(cat.unit_embeddings, fit.items)
    torch.testing.assert_close(cat.popularity, fit.item_counts / fit.item_counts.sum())
    assert cat.centres.shape == (3, 4) and cat.num_clusters == 3
    torch.testing.assert_close(cat.centres.norm(dim=-1), torch.ones(3))
    assert float(cat.mixture_weights.sum()) == pytest.approx(1.0)
    # Each item's cluster is its nearest centre.
    assert torch.equal(cat.cluster, (fit.items @ cat.centres.T).argmax(-1))
    with pytest.raises(ValueError, match=r"num_clusters: expected an integer in \[1, 80\]"):
        fitted_world(fit, num_clusters=81, seed=0)


def test_env_passes_check_env_specs_and_runs_the_session_core(ratings_file, tmp_path):
    env = make_env(
        "FittedRatings", num_envs=5, seed=0, ratings_path=ratings_file, cache_dir=tmp_path, **SMALL
    )
    assert isinstance(env, FittedRatings)
    check_env_specs(env)
    assert env.config.num_items == 50 and env.catalogue.embeddings.shape == (50, 4)
    assert env.config.delta == env.fitted.delta and env.config.user_spread == 0.0
    assert torch.equal(env.catalogue.embeddings, env.fitted.items)
    env.reset()
    # The core's reward rule on the fitted items, for the users it drew.
    preference = env.latent_state()["preference"]
    rule = dynamics.affinity(env.fitted.items, preference, env.config.delta)
    torch.testing.assert_close(env.reward_table(), rule)
    rollout = env.rollout(30)
    assert rollout["next", "reward"].shape[-1] == 1
    assert ((rollout["next", "reward"] >= 0) & (rollout["next", "reward"] <= 1)).all()


def test_simulated_users_are_the_fitted_users_and_reproduce_the_fit(
    ratings_file, tmp_path, monkeypatch
):
    def no_synthetic_draw(*args, **kwargs):
        raise AssertionError("the synthetic catalogue should not be drawn")

    monkeypatch.setattr(Catalogue, "from_config", no_synthetic_draw)
    env = make_env(
        "FittedRatings", num_envs=64, seed=1, ratings_path=ratings_file, cache_dir=tmp_path, **SMALL
    )
    fit = env.fitted
    env.reset()
    preference = env.latent_state()["preference"]
    # No spread: each simulated user is exactly one fitted user, and many distinct ones.
    user = (preference @ fit.users.T).argmax(dim=-1)
    torch.testing.assert_close(preference, fit.users[user], rtol=0, atol=1e-6)
    assert len(user.unique()) > 30
    torch.testing.assert_close(env.population.weights, torch.full((80,), 1 / 80))
    # So the env's rewards at arrival are the fit's predicted ratings for those users.
    predicted = fit.predict(user.repeat_interleave(50), torch.arange(50).repeat(64))
    torch.testing.assert_close(env.reward_table(), predicted.view(64, 50), rtol=1e-5, atol=1e-6)


def test_user_weighting_and_spread(ratings_file, tmp_path):
    kwargs = dict(ratings_path=ratings_file, cache_dir=tmp_path, **SMALL)
    env = make_env("FittedRatings", num_envs=64, seed=1, user_weighting="activity", **kwargs)
    counts = env.fitted.user_counts.float()
    torch.testing.assert_close(env.population.weights, counts / counts.sum())
    assert torch.equal(fitted_population(env.fitted, "activity").weights, env.population.weights)
    with pytest.raises(ValueError, match="weighting: expected one of"):
        fitted_population(env.fitted, "by_age")
    spread = make_env("FittedRatings", num_envs=64, seed=1, user_spread=0.3, **kwargs)
    spread.reset()
    preference = spread.latent_state()["preference"]
    nearest = (preference @ spread.fitted.users.T).max(dim=-1).values
    assert float(nearest.max()) < 0.999 and float(nearest.mean()) > 0.5


def test_env_config_rebuilds_the_same_env(ratings_file, tmp_path):
    kwargs = dict(ratings_path=ratings_file, cache_dir=tmp_path, **SMALL)
    env = make_env("FittedRatings", num_envs=3, seed=4, **kwargs)
    again = FittedRatings(env.config, num_envs=3, seed=4)
    assert again.config == env.config
    assert torch.equal(again.catalogue.embeddings, env.catalogue.embeddings)
    a, b = env.reset(), again.reset()
    assert torch.equal(env.reward_table(), again.reward_table())
    a["action"] = b["action"] = torch.tensor([0, 7, 49])
    a, b = env.step(a)["next"], again.step(b)["next"]
    assert torch.equal(a["reward"], b["reward"]) and torch.equal(a["observation"], b["observation"])


def test_building_the_same_env_again_reads_hashes_and_fits_once(tmp_path, monkeypatch):
    ratings_file = low_rank_ratings(tmp_path / "u.data", users=20, items=12)
    calls = {"sha256": 0, "fit": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(fit_cache, "file_sha256", counted("sha256", fit_cache.file_sha256))
    monkeypatch.setattr(fit_cache, "fit_embeddings", counted("fit", fit_cache.fit_embeddings))
    kwargs = dict(ratings_path=ratings_file, cache_dir=tmp_path / "cache", **SMALL)
    first = make_env("FittedRatings", num_envs=2, seed=0, **kwargs)
    again = make_env("FittedRatings", num_envs=3, seed=1, **kwargs)
    rebuilt = FittedRatings(first.config, num_envs=2, seed=0)
    assert calls == {"sha256": 1, "fit": 1}
    assert again.fitted is first.fitted and rebuilt.fitted is first.fitted
    # Other fit settings: another fit.
    make_env("FittedRatings", **{**kwargs, "fit_steps": 20})
    assert calls == {"sha256": 2, "fit": 2}
    # The same bytes touched: hashed again, then found in the disk cache.
    stat = ratings_file.stat()
    os.utime(ratings_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = make_env("FittedRatings", **kwargs)
    assert calls == {"sha256": 3, "fit": 2}
    assert torch.equal(touched.fitted.users, first.fitted.users)
    # Other bytes: read, hashed and fitted again.
    low_rank_ratings(ratings_file, users=20, items=12, seed=1)
    changed = make_env("FittedRatings", **kwargs)
    assert calls == {"sha256": 4, "fit": 3}
    assert not torch.equal(changed.fitted.users, first.fitted.users)


def test_config_errors_name_the_field(ratings_file, tmp_path):
    with pytest.raises(ValueError, match="config field 'ratings_path': expected the path"):
        make_env("FittedRatings")
    with pytest.raises(ValueError, match="config field 'zipf_exponent': expected its default"):
        FittedRatingsConfig(ratings_path="u.data", zipf_exponent=2.0)
    with pytest.raises(ValueError, match="config field 'delta': expected a number > 0 when"):
        FittedRatingsConfig(ratings_path="u.data", fit_delta=False)
    with pytest.raises(ValueError, match="config: fit setting 'steps'"):
        FittedRatingsConfig(ratings_path="u.data", fit_steps=0)
    with pytest.raises(ValueError, match="config field 'user_weighting': expected one of"):
        FittedRatingsConfig(ratings_path="u.data", user_weighting="by_age")
    with pytest.raises(ValueError, match="config field 'max_length'"):
        FittedRatingsConfig(ratings_path="u.data", max_length=0)
    with pytest.raises(ValueError, match="unknown config field"):
        make_env("FittedRatings", ratings_path=ratings_file, not_a_field=1)
    kwargs = dict(ratings_path=ratings_file, cache_dir=tmp_path, **SMALL)
    with pytest.raises(ValueError, match="'num_items': expected None or 50"):
        make_env("FittedRatings", num_items=49, **kwargs)
    with pytest.raises(ValueError, match="'delta': expected None or the fitted width"):
        make_env("FittedRatings", delta=0.123, **kwargs)


def test_gymnasium_face(ratings_file, tmp_path):
    assert "drpo_rl/FittedRatings-v0" in gym.registry
    env = gym.make(
        "drpo_rl/FittedRatings-v0", ratings_path=str(ratings_file), cache_dir=str(tmp_path), **SMALL
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    obs, reward, terminated, truncated, _ = env.step(3)
    assert 0.0 <= reward <= 1.0


def test_movielens_100k_registered_when_recbole_is_installed(tmp_path):
    if recbole_ml100k_path() is None:
        pytest.skip("recbole is not installed (pip install --no-deps recbole==1.2.1)")
    assert "MovieLens100K" in envs.list_envs()
    assert "drpo_rl/MovieLens100K-v0" in gym.registry
    env = make_env("drpo_rl/MovieLens100K-v0", num_envs=2, seed=0, fit_steps=5, cache_dir=tmp_path)
    assert env.config.num_items == 1682 and env.fitted.num_users == 943
    check_env_specs(env)


@pytest.mark.slow
def test_movielens_100k_fit_quality(tmp_path):
    if recbole_ml100k_path() is None:
        pytest.skip("recbole is not installed (pip install --no-deps recbole==1.2.1)")
    fit = load_or_fit(recbole_ml100k_path(), cache_dir=tmp_path)
    assert fit.rmse["heldout"] < 0.95 < fit.rmse["baseline"]


def test_a_malformed_ratings_file_stops_the_env_with_its_line(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\t4\n1\t-2\t3\t5\n")
    with pytest.raises(TableError) as info:
        make_env("FittedRatings", ratings_path=path, cache_dir=tmp_path, **SMALL)
    assert str(info.value) == (
        f"{path}, line 2, column 'item': expected a non-negative integer id, got '-2'"
    )
    assert not list(tmp_path.glob("*.pt"))  # nothing cached from a bad file
