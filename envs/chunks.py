"""Exact reductions over the catalogue, one chunk of items at a time.

A catalogue of 10^6 items and 10^5 users would need a [users, items] buffer of 400 GB: no
path of the suite builds one. Whatever needs a score for every item (the embedding decode,
the oracle, the expert behaviour) computes the scores of `chunk_size` items at a time,
`score(items)` -> [B, chunk], and folds them into a running result; peak memory is one
chunk, and the result equals the one-table computation for every chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from envs.common.checks import check_int

#: A score function: the scores [B, len(items)] of the items `items` (a slice of ids).
Scores = Callable[[slice], torch.Tensor]

#: Bytes one chunk of float32 scores may take when no chunk size is given, per device type
#: (a behaviour mixture holds a few such blocks at once; on the CPU 16 MiB keeps each
#: matrix product large enough to run at full speed, a GPU wants fewer, larger launches).
CHUNK_BYTES = {"cpu": 16 * 2**20, "cuda": 2**30}
#: Fewest items per chunk by default: more users than the budget allows still get chunks
#: worth a kernel launch.
MIN_CHUNK_ITEMS = 16


def default_chunk_size(num_users: int, num_items: int, device: str = "cpu") -> int:
    """Items per chunk so that a [num_users, chunk] float32 block fits the device's
    `CHUNK_BYTES` (at least `MIN_CHUNK_ITEMS`, at most the catalogue).

    Example:
        >>> default_chunk_size(4096, 1_000_000), default_chunk_size(4096, 100)
        (1024, 100)
        >>> default_chunk_size(8_388_608, 1_000_000, "cuda")
        32
    """
    budget = CHUNK_BYTES.get(torch.device(device).type, CHUNK_BYTES["cpu"])
    fitting = budget // (4 * max(num_users, 1))
    return max(1, min(num_items, max(MIN_CHUNK_ITEMS, fitting)))


def item_chunks(num_items: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive slices of at most `chunk_size` item ids covering [0, num_items).

    Example:
        >>> list(item_chunks(5, 2))
        [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    check_int("chunk_size", chunk_size)
    for start in range(0, num_items, chunk_size):
        yield slice(start, min(start + chunk_size, num_items))


def argmax(score: Scores, num_items: int, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(best score [B], its item id int64 [B]); ties go to the lowest id, as `Tensor.argmax`.

    Example:
        >>> import torch
        >>> table = torch.tensor([[0.1, 0.9, 0.9, 0.2], [0.5, 0.1, 0.3, 0.7]])
        >>> argmax(lambda items: table[:, items], 4, 3)
        (tensor([0.9000, 0.7000]), tensor([1, 3]))
    """
    best_value = best_item = None
    for items in item_chunks(num_items, chunk_size):
        value, index = score(items).max(dim=-1)
        index = index + items.start
        if best_value is None:
            best_value, best_item = value, index
        else:
            better = value > best_value  # strict: an earlier chunk wins ties
            best_value = torch.where(better, value, best_value)
            best_item = torch.where(better, index, best_item)
    return best_value, best_item


def topk(
    score: Scores, num_items: int, k: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the k best scores [B, k], descending, and their item ids int64 [B, k]).

    Example:
        >>> import torch
        >>> table = torch.tensor([[0.1, 0.9, 0.4, 0.2, 0.8]])
        >>> topk(lambda items: table[:, items], 5, 2, 2)[1].tolist()
        [[1, 4]]
    """
    check_int("k", k)
    k = min(k, num_items)
    values = indices = None
    for items in item_chunks(num_items, chunk_size):
        chunk = score(items)
        ids = torch.arange(items.start, items.stop, device=chunk.device).expand_as(chunk)
        if values is not None:
            chunk, ids = torch.cat([values, chunk], -1), torch.cat([indices, ids], -1)
        values, order = chunk.topk(min(k, chunk.shape[-1]), dim=-1)
        indices = ids.gather(-1, order)
    return values, indices


def logsumexp_by_chunk(score: Scores, num_items: int, chunk_size: int) -> torch.Tensor:
    """log sum_i exp(score_i) within each chunk of items: [B, number of chunks].

    Example:
        >>> import torch
        >>> table = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]))
        >>> logsumexp_by_chunk(lambda items: table[:, items], 5, 2).exp().round().tolist()
        [[3.0, 7.0, 5.0]]
    """
    parts = [torch.logsumexp(score(items), dim=-1) for items in item_chunks(num_items, chunk_size)]
    return torch.stack(parts, dim=-1)


def logsumexp(score: Scores, num_items: int, chunk_size: int) -> torch.Tensor:
    """log sum_i exp(score_i) over the catalogue: [B] (running max, no overflow).

    Example:
        >>> import torch
        >>> table = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
        >>> round(float(logsumexp(lambda items: table[:, items], 4, 3).exp()), 4)
        10.0
    """
    total = None
    for items in item_chunks(num_items, chunk_size):
        part = torch.logsumexp(score(items), dim=-1)
        total = part if total is None else torch.logaddexp(total, part)
    return total


def sample(
    log_prob: Scores, num_items: int, chunk_size: int, uniform: torch.Tensor
) -> torch.Tensor:
    """Item ids int64 [B] by inverse CDF of normalised log-probabilities `log_prob`.

    `uniform` [B] in [0, 1) is each user's draw: the result is the first item whose
    cumulative probability exceeds it, so the same draws give the same items whatever the
    chunk size. Zero-probability items are never chosen; a draw beyond the total (which
    rounding may leave just below 1) takes the last item of positive probability.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.5, 0.0, 0.25, 0.25]]).log()
        >>> [int(sample(lambda items: probs[:, items], 4, 2, torch.tensor([u])))
        ...  for u in (0.1, 0.6, 0.9, 0.999999)]
        [0, 2, 3, 3]
    """
    below = torch.zeros_like(uniform)
    chosen = torch.full(uniform.shape, -1, dtype=torch.int64, device=uniform.device)
    # Start of the last chunk holding any probability, for the rare draw beyond the total.
    last_with_mass = torch.zeros_like(chosen)
    point = uniform.unsqueeze(-1)
    for items in item_chunks(num_items, chunk_size):
        cdf = log_prob(items).exp().cumsum_(-1).add_(below.unsqueeze(-1))
        inside = torch.searchsorted(cdf, point, right=True).squeeze(-1)
        # searchsorted(right=True) skips the flat steps of zero-probability items, so a
        # found item always has positive probability.
        chosen = torch.where((chosen < 0) & (inside < cdf.shape[-1]), inside + items.start, chosen)
        total = cdf[:, -1]
        last_with_mass = torch.where(total > below, items.start, last_with_mass)
        below = total
    missing = chosen < 0
    if bool(missing.any()):
        for start in last_with_mass[missing].unique().tolist():
            items = slice(start, min(start + chunk_size, num_items))
            positive = log_prob(items) > -math.inf
            last = positive.shape[-1] - 1 - positive.flip(-1).to(torch.int8).argmax(-1)
            chosen = torch.where(missing & (last_with_mass == start), last + start, chosen)
    return chosen


#: Scores of a chunk of items for some users: (items: slice, users: int64 [r]) -> [r, n].
UserScores = Callable[[slice, torch.Tensor], torch.Tensor]


def sample_by_chunk(
    log_prob: UserScores,
    chunk_log_mass: torch.Tensor,
    num_items: int,
    chunk_size: int,
    uniform: torch.Tensor,
) -> torch.Tensor:
    """Item ids int64 [B] by inverse CDF in two steps: the chunk, then the item in it.

    `chunk_log_mass` [B, C] holds each chunk's normalised log-probability (from
    `logsumexp_by_chunk` of the same log-probabilities); each user's draw `uniform` picks
    its chunk, then the rest of the draw picks the item within it, scoring for each user
    that one chunk only: one pass over the catalogue (the masses) instead of two. The
    result is `sample`'s up to rounding. For distributions without zero-probability items
    (a softmax): rounding could otherwise end on one.

    Example:
        >>> import torch
        >>> logp = torch.tensor([[0.5, 0.1, 0.25, 0.15]]).log()
        >>> mass = logsumexp_by_chunk(lambda items: logp[:, items], 4, 2)
        >>> pick = lambda u: int(sample_by_chunk(
        ...     lambda items, users: logp[users][:, items], mass, 4, 2, torch.tensor([u])))
        >>> [pick(u) for u in (0.1, 0.55, 0.7, 0.9)]
        [0, 1, 2, 3]
    """
    cdf = chunk_log_mass.exp().cumsum(-1)
    point = uniform.unsqueeze(-1)
    chunk = torch.searchsorted(cdf, point, right=True).clamp_(max=cdf.shape[-1] - 1)
    before = torch.where(chunk > 0, cdf.gather(-1, (chunk - 1).clamp_(min=0)), 0.0)
    mass = chunk_log_mass.gather(-1, chunk).exp()
    residual = ((point - before) / mass).squeeze(-1)  # where the draw falls in its chunk
    chunk = chunk.squeeze(-1)
    chosen = torch.empty_like(chunk)
    for index in chunk.unique().tolist():
        users = (chunk == index).nonzero().squeeze(-1)
        items = slice(index * chunk_size, min((index + 1) * chunk_size, num_items))
        inside = log_prob(items, users).exp().cumsum_(-1)
        target = (residual[users] * inside[:, -1]).unsqueeze(-1)
        item = torch.searchsorted(inside, target, right=True).clamp_(max=inside.shape[-1] - 1)
        chosen[users] = item.squeeze(-1) + items.start
    return chosen
