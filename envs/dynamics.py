"""The rules of the simulated users, as pure batched torch functions.

Every environment of the suite (bandit, session, their Gymnasium faces) runs these and
only these, so each rule lives here once. Shapes: B users, N items, C clusters, d dims,
K history slots. A user state is a dict of [B, ...] tensors (see `new_users`). Nothing
here synchronises with the device, and nothing builds a [B, N] tensor: rules that score
items take the items to score (a slice of ids for a chunk, or one id per user).
"""

from __future__ import annotations

import torch

from envs import chunks
from envs.catalogue import Catalogue
from envs.config import RecSimConfig, SessionDynamics
from envs.population import UserPopulation

#: A user state: preference, view_offset, step, and (when the dynamics use them)
#: patience, fatigue, history_items, history_rewards; each a [B, ...] tensor.
State = dict[str, torch.Tensor]


def rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` for an int64 index of any shape, through `index_select` (several
    times faster than advanced indexing on the CPU for the small tables of a step)."""
    if index.dim() == 1:
        return table.index_select(0, index)
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (`torch.nn.functional.normalize`'s result, in fewer ops)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)


def sample_preferences(
    population: UserPopulation, num_users: int, spread: float, generator: torch.Generator
) -> torch.Tensor:
    """Unit-length latent preferences u* [B, d]: a population row picked by its weight,
    plus N(0, spread^2 I), normalised."""
    device = population.device
    # Inverse CDF: one uniform per user (torch.multinomial costs ~10x more per call).
    cdf = population.cdf
    uniform = torch.rand(num_users, generator=generator, device=device)
    row = torch.searchsorted(cdf, uniform * cdf[-1], right=True).clamp_(max=cdf.shape[0] - 1)
    table = population.preferences
    if spread == 0.0:
        return unit(rows(table, row))
    noise = torch.randn(num_users, table.shape[1], generator=generator, device=device)
    return unit(rows(table, row) + spread * noise)


def affinity_of_cosine(
    cosine: torch.Tensor, delta: float | torch.Tensor, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The reward rule exp(-(1 - cos) / (2 delta^2)), elementwise on cosines.

    The one statement of the rule: `affinity` (a chunk of items for every user) and
    `pair_affinity` (matched pairs: the item shown, the fit) both call it. Differentiable
    in `cosine` and `delta` (which may be a tensor) when `out` is None; `out=cosine`
    computes in the cosine's own buffer instead (no autograd; spares a buffer per chunk).

    Example:
        >>> import torch
        >>> from envs.dynamics import affinity_of_cosine
        >>> affinity_of_cosine(torch.tensor([1.0, 0.0, 1.0 + 1e-6]), 1.0)
        tensor([1.0000, 0.6065, 1.0000])
    """
    # Rounding can push a cosine of unit vectors past 1; the clamp keeps the reward <= 1.
    scaled = torch.mul(torch.sub(cosine, 1.0, out=out), 1.0 / (2.0 * delta * delta), out=out)
    return torch.exp(torch.clamp(scaled, max=0.0, out=out), out=out)


def affinity(unit_items: torch.Tensor, preference: torch.Tensor, delta: float) -> torch.Tensor:
    """The reward rule for every item of `unit_items` [n, d] and every user: [B, n].

    `unit_items` and `preference` [B, d] must both have unit rows.
    """
    cosine = preference @ unit_items.T
    return affinity_of_cosine(cosine, delta, out=cosine)


def pair_affinity(
    unit_items: torch.Tensor, preference: torch.Tensor, delta: float | torch.Tensor
) -> torch.Tensor:
    """The reward rule for matched pairs: row i of `unit_items` [..., d] with row i of
    `preference` [..., d], both unit rows: [...]. Differentiable (the fit's link).

    Example:
        >>> import torch
        >>> from envs.dynamics import affinity, pair_affinity
        >>> items = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
        >>> users = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
        >>> pairs = pair_affinity(items[[4, 0]], users, 0.5)  # (user 0, item 4), (1, 0)
        >>> bool(torch.allclose(pairs, affinity(items, users, 0.5)[[0, 1], [4, 0]]))
        True
    """
    return affinity_of_cosine((unit_items * preference).sum(-1), delta)


def latent_rewards(
    catalogue: Catalogue,
    config: RecSimConfig,
    dynamics: SessionDynamics,
    state: State,
    items: torch.Tensor,
) -> torch.Tensor:
    """Noiseless reward of `items` for each user: items int64 [B] -> [B], [B, k] -> [B, k].

    O(B k d): only the given items are touched.
    """
    many = items.dim() == 2
    preference = state["preference"].unsqueeze(1) if many else state["preference"]
    rewards = pair_affinity(rows(catalogue.unit_embeddings, items), preference, config.delta)
    fatigue = state.get("fatigue")
    if fatigue is not None:
        cluster = rows(catalogue.cluster, items)
        index = cluster if many else cluster.unsqueeze(-1)
        level = fatigue.gather(-1, index)
        rewards = rewards * torch.exp(-dynamics.fatigue_strength * (level if many else level[:, 0]))
    return rewards


def reward_table(
    catalogue: Catalogue,
    config: RecSimConfig,
    dynamics: SessionDynamics,
    state: State,
    items: slice,
) -> torch.Tensor:
    """Noiseless reward of the items `items` (a slice of ids) for every user: [B, n]."""
    rewards = affinity(catalogue.unit_embeddings[items], state["preference"], config.delta)
    fatigue = state.get("fatigue")
    if fatigue is not None:
        # exp over the C clusters, then spread to the chunk's items (C << N).
        factor = torch.exp(-dynamics.fatigue_strength * fatigue)
        rewards = rewards * factor.index_select(1, catalogue.cluster[items])
    return rewards


def best_items(
    catalogue: Catalogue,
    config: RecSimConfig,
    dynamics: SessionDynamics,
    state: State,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle: (each user's best item int64 [B], its noiseless reward [B]), exact.

    The reward exp((cos - 1) / (2 delta^2)) exp(-s f[c]) is increasing in
    cos / (2 delta^2) - s f[c], so the chunks are compared on that score (one matrix
    product per chunk, no exp); the winner's reward is the rule's own value.
    """
    preference = state["preference"] * (1.0 / (2.0 * config.delta * config.delta))
    fatigue = state.get("fatigue")
    penalty = None if fatigue is None else dynamics.fatigue_strength * fatigue

    def score(items: slice) -> torch.Tensor:
        scores = preference @ catalogue.unit_embeddings[items].T
        if penalty is not None:
            scores = scores - penalty.index_select(1, catalogue.cluster[items])
        return scores

    _, items = chunks.argmax(score, catalogue.num_items, chunk_size)
    return items, latent_rewards(catalogue, config, dynamics, state, items)


def observe_reward(
    latent: torch.Tensor, noise_std: float, generator: torch.Generator
) -> torch.Tensor:
    """clip(latent + N(0, noise_std^2), 0, 1), same shape as `latent`."""
    if noise_std == 0.0:
        return latent.clamp(0.0, 1.0)
    noise = torch.randn(latent.shape, generator=generator, device=latent.device)
    return (latent + noise_std * noise).clamp_(0.0, 1.0)


def drift_preference(
    preference: torch.Tensor, item_unit: torch.Tensor, engagement: torch.Tensor, rate: float
) -> torch.Tensor:
    """Move each preference toward the consumed item, in proportion to the engagement."""
    step = (rate * engagement).unsqueeze(-1)
    return unit((1.0 - step) * preference + step * item_unit)


def new_users(
    catalogue: Catalogue,
    population: UserPopulation,
    config: RecSimConfig,
    dynamics: SessionDynamics,
    num_users: int,
    generator: torch.Generator,
) -> State:
    """Freshly arrived users, drawn from `population`: their whole state at the start of an
    episode. Only what the dynamics use is kept (no fatigue without fatigue, ...)."""
    device = catalogue.device
    d = catalogue.embeddings.shape[1]
    k = dynamics.history_length
    state = {"preference": sample_preferences(population, num_users, config.user_spread, generator)}
    if config.observation_noise == 0.0:
        state["view_offset"] = torch.zeros(num_users, d, device=device)
    else:
        state["view_offset"] = config.observation_noise * torch.randn(
            num_users, d, generator=generator, device=device
        )
    state["step"] = torch.zeros(num_users, dtype=torch.int64, device=device)
    if dynamics.patience != float("inf"):
        state["patience"] = torch.full((num_users,), dynamics.patience, device=device)
    if dynamics.tracks_fatigue:
        state["fatigue"] = torch.zeros(num_users, catalogue.num_clusters, device=device)
    if k > 0:
        state["history_items"] = torch.full((num_users, k), -1, dtype=torch.int64, device=device)
        state["history_rewards"] = torch.zeros(num_users, k, device=device)
    return state


def observe(catalogue: Catalogue, state: State, dynamics: SessionDynamics) -> torch.Tensor:
    """The observation [B, obs_dim] of each user's state, laid out as `observation_layout`.

    noisy u (d) | embeddings of the K most recent items, most recent first, zeros for empty
    slots (K*d) | their observed rewards (K) | step / max_length (1, sessions only).
    """
    parts = [state["preference"] + state["view_offset"]]
    if dynamics.history_length > 0:
        items = state["history_items"]
        empty = (items < 0).unsqueeze(-1)
        shown = rows(catalogue.embeddings, items.clamp_min(0)).masked_fill(empty, 0.0)
        parts += [shown.flatten(1), state["history_rewards"]]
    if dynamics.observe_step:
        parts.append((state["step"].to(torch.float32) / dynamics.max_length).unsqueeze(-1))
    return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


def observation_layout(embedding_dim: int, dynamics: SessionDynamics) -> dict[str, slice]:
    """Where each part of the observation sits (the parts `observe` concatenates).

    Example:
        >>> from envs.config import UserSessionConfig
        >>> from envs.dynamics import observation_layout
        >>> observation_layout(4, UserSessionConfig(history_length=2).dynamics())
        {'preference': slice(0, 4, None), 'history_items': slice(4, 12, None), \
'history_rewards': slice(12, 14, None), 'step': slice(14, 15, None)}
    """
    k = dynamics.history_length
    sizes = {"preference": embedding_dim}
    if k > 0:
        sizes |= {"history_items": k * embedding_dim, "history_rewards": k}
    if dynamics.observe_step:
        sizes["step"] = 1
    layout, start = {}, 0
    for name, size in sizes.items():
        layout[name] = slice(start, start + size)
        start += size
    return layout


def consume(
    catalogue: Catalogue,
    config: RecSimConfig,
    dynamics: SessionDynamics,
    state: State,
    item: torch.Tensor,
    generator: torch.Generator,
) -> tuple[State, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Show `item` [B] to every user: (next state, observed reward, latent reward,
    terminated, truncated), the last two bool [B].

    Order of the rules: the reward is drawn from the current state; then the preference
    drifts toward the item (weighted by the observed reward), patience drops by
    (1 - reward) + boredom * (fatigue of the item's cluster), the cluster gains fatigue,
    and the episode ends: terminated when the user leaves (patience spent), truncated
    when `max_length` items were shown and the user stayed (`cap_truncates`; the bandit's
    single step terminates instead). Returns new tensors; `state` is not modified.
    """
    latent = latent_rewards(catalogue, config, dynamics, state, item)
    reward = observe_reward(latent, config.reward_noise, generator)
    step = state["step"] + 1
    next_state = dict(state, step=step)
    capped = step >= dynamics.max_length
    left = torch.zeros_like(capped)
    if "patience" in state:
        cost = 1.0 - reward
        if dynamics.boredom != 0.0:
            level = state["fatigue"].gather(-1, rows(catalogue.cluster, item).unsqueeze(-1))
            cost = cost + dynamics.boredom * level[:, 0]
        patience = state["patience"] - cost
        next_state["patience"] = patience
        left = patience <= 0
    if dynamics.history_length > 0:
        next_state["history_items"] = torch.cat(
            [item.unsqueeze(-1), state["history_items"][:, :-1]], dim=-1
        )
        next_state["history_rewards"] = torch.cat(
            [reward.unsqueeze(-1), state["history_rewards"][:, :-1]], dim=-1
        )
    if dynamics.drift_rate != 0.0:
        next_state["preference"] = drift_preference(
            state["preference"], rows(catalogue.unit_embeddings, item), reward, dynamics.drift_rate
        )
    if "fatigue" in state:
        clusters = torch.nn.functional.one_hot(
            rows(catalogue.cluster, item), catalogue.num_clusters
        )
        next_state["fatigue"] = dynamics.fatigue_decay * state["fatigue"] + clusters
    if dynamics.cap_truncates:
        return next_state, reward, latent, left, capped & ~left
    return next_state, reward, latent, left | capped, torch.zeros_like(capped)
