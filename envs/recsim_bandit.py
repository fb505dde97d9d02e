"""The paper's simulator: one-step recommendation to users with a latent preference."""

from __future__ import annotations

from envs.config import RecSimConfig
from envs.simulator import SimulatedUsersEnv


class RecSimBandit(SimulatedUsersEnv):
    """
    ## Description

    The simulator of the DRPO paper (its "RecSim", not Google's), as a batched TorchRL
    environment: a contextual bandit with horizon 1. A catalogue of `num_items` items has
    embeddings drawn from a mixture of `num_clusters` Gaussians in R^d and Zipfian
    popularity. Each of the `num_envs` users has a latent unit preference u*, drawn near a
    mixture centre (centre of a component chosen by `mixture_weights`, plus Gaussian noise of
    standard deviation `user_spread`, normalised), so that some items suit every user. The
    agent recommends one item; the user rewards it and the episode ends.

    The catalogue depends on `catalogue_seed` only: envs built with different episode seeds
    (logging, evaluation) share one catalogue (`env.catalogue`: `.embeddings` [N, d],
    `.popularity` [N], `.cluster` [N]).

    ## Action Space

    An embedding, float32 tensor of shape `(num_envs, d)` (spec `Bounded(-1, 1)`, the box
    that reaches every item; larger values are accepted too), decoded to the catalogue
    item of highest cosine similarity (its norm does not matter).
    `RecSimBanditDiscrete` takes the item id instead. A wrong shape or dtype, or a NaN, raises
    `ValueError` saying what was expected.

    ## Observation Space

    "observation" is float32 of shape `(num_envs, d)`: a noisy view of u*,

    | Num    | Observation                                   | Min  | Max |
    |--------|-----------------------------------------------|------|-----|
    | 0..d-1 | u* + offset, offset ~ N(0, observation_noise^2 I) drawn at reset | -Inf | Inf |

    Beside it, "item" (int64 `(num_envs,)`) is the item the action decoded to (-1 at reset).

    Privileged truth (for expert behaviour and evaluation only, never for a learner's
    input) is asked of the env for its current users: `env.oracle()` (best item and its
    noiseless reward), `env.rewards(items)`, `env.reward_table(items)`; computed exactly in
    chunks of `chunk_size` items. `privileged=(...)` adds some of it to the outputs:

    | Key              | Shape / dtype         | Meaning                                      |
    |------------------|-----------------------|----------------------------------------------|
    | "latent_reward"  | (num_envs, 1) float32 | noiseless reward of the item shown (0 at reset) |
    | "oracle_item"    | (num_envs,) int64     | with "oracle": each user's best item          |
    | "oracle_reward"  | (num_envs, 1) float32 | with "oracle": its noiseless reward           |
    | "item_rewards"   | (num_envs, N) float32 | every item's noiseless reward (small catalogues) |

    ## Cost

    A step costs O(num_envs x d) plus the exact decode of an embedding action (one matrix
    product per chunk of `chunk_size` items, running argmax); building the env costs
    O(N x d). Nothing of shape (num_envs, N) is built unless "item_rewards" is asked for.

    ## Rewards

    For the shown item e: latent = exp(-(1 - cos(e, u*)) / (2 delta^2)) in (0, 1], and
    ("next", "reward") = clip(latent + N(0, reward_noise^2), 0, 1), float32 `(num_envs, 1)`.
    At the defaults the mean latent reward is about 0.82 for the best item, 0.21 for a
    uniformly random one and 0.18 for the most popular one.

    ## Starting State

    Each user gets a fresh u* and a fresh observation offset at every reset. A partial
    reset (`"_reset"` mask of shape `(num_envs, 1)`) renews only the masked users.

    ## Episode End

    Termination after every step (horizon 1): "done" = "terminated" = True,
    "truncated" = False.

    ## Arguments

    `RecSimBandit(config=None, *, num_envs=1, device="cpu", seed=None, privileged=(),
    chunk_size=None)`, or `envs.make_env("RecSimBandit", num_envs=..., device=...,
    seed=..., privileged=..., chunk_size=..., **fields)`. `privileged` names the
    privileged keys to add to the outputs (see above); `chunk_size` is the number of items
    per chunk of the decode and the privileged queries (default: as many as fit 16 MiB of
    float32 scores for `num_envs` users on the CPU, 1 GiB on a GPU; see `envs.chunks`).
    The fields are those of `RecSimConfig`:

    | Parameter           | Type               | Default     | Description                    |
    |---------------------|--------------------|-------------|--------------------------------|
    | `num_items`         | int                | 100         | catalogue size N               |
    | `embedding_dim`     | int                | 16          | d                              |
    | `num_clusters`      | int                | 8           | mixture components C           |
    | `mixture_weights`   | tuple or None      | None        | component probabilities (None: |
    |                     |                    |             | uniform), for items and users  |
    | `cluster_spread`    | float              | 0.15        | std of items around a centre   |
    | `zipf_exponent`     | float              | 1.0         | popularity of rank k ~ k^-s    |
    | `catalogue_seed`    | int                | 0           | the only seed of the catalogue |
    | `user_spread`       | float              | 0.1         | std of u* around its centre    |
    | `delta`             | float              | 0.5         | width of the reward kernel     |
    | `reward_noise`      | float              | 0.1         | std of the reward noise        |
    | `observation_noise` | float              | 0.1         | std of the observation offset  |
    | `action_type`       | str                | "embedding" | a kind of `envs.actions`:      |
    |                     |                    |             | "embedding" or "item"          |

    `seed` seeds a `torch.Generator` on `env.device` (also `env.set_seed(seed)`); the same
    seed gives the same users, rewards and observations.

    ```python
    >>> import torch
    >>> from envs import make_env
    >>> env = make_env("RecSimBandit", num_envs=3, seed=0)
    >>> td = env.reset()
    >>> td["observation"].shape
    torch.Size([3, 16])
    >>> best = env.oracle()["item"]
    >>> td["action"] = env.catalogue.embeddings[best]  # the oracle, as embeddings
    >>> out = env.step(td)["next"]
    >>> bool((out["item"] == best).all()), out["reward"].shape, bool(out["done"].all())
    (True, torch.Size([3, 1]), True)

    ```

    ## Vectorized environment

    The env is batched: `num_envs` users step at once on `device` (CPU or CUDA). Its
    Gymnasium face `drpo_rl/RecSimBandit-v0` registers a `vector_entry_point` backed by this
    same core:

    ```python
    >>> import gymnasium as gym
    >>> import envs
    >>> vec = gym.make_vec("drpo_rl/RecSimBandit-v0", num_envs=4,
    ...                    vectorization_mode="vector_entry_point")
    >>> vec.reset(seed=0)[0].shape
    (4, 16)

    ```

    ## Version History

    * v0: initial version.
    """

    config_class = RecSimConfig


class RecSimBanditDiscrete(RecSimBandit):
    """
    ## Description

    `RecSimBandit` with the item id as action: the same catalogue, users, observation,
    reward and episode end (see `RecSimBandit` for all of them).

    ## Action Space

    An int64 tensor of shape `(num_envs,)` with values in `[0, num_items)` (spec
    `Categorical(num_items)`). A float or bool tensor, a wrong shape or an out-of-range id
    raises `ValueError` saying what was expected.

    ## Observation Space

    As `RecSimBandit`: "observation" float32 `(num_envs, d)`, "item", and the privileged
    queries and keys.

    ## Rewards

    As `RecSimBandit`, for the chosen item.

    ## Starting State

    As `RecSimBandit`.

    ## Episode End

    After every step (horizon 1).

    ## Arguments

    Those of `RecSimBandit`; `action_type` defaults to "item".

    ```python
    >>> import torch
    >>> from envs import make_env
    >>> env = make_env("RecSimBanditDiscrete", num_envs=2, seed=0, num_items=10,
    ...                privileged=("latent_reward",))
    >>> td = env.reset()
    >>> before = env.rewards(torch.tensor([3, 7]))
    >>> td["action"] = torch.tensor([3, 7])
    >>> out = env.step(td)["next"]
    >>> out["item"].tolist()
    [3, 7]
    >>> bool(torch.equal(out["latent_reward"][:, 0], before))
    True

    ```

    ## Vectorized environment

    Batched like `RecSimBandit`; Gymnasium id `drpo_rl/RecSimBanditDiscrete-v0`
    (`Discrete(num_items)`), with a `vector_entry_point`.

    ## Version History

    * v0: initial version.
    """

    @classmethod
    def default_config(cls, **overrides: object) -> RecSimConfig:
        return super().default_config(**{"action_type": "item", **overrides})
