"""Which materials to compute in RPA next: acquisition functions over a pool of candidates.

* ``random``: the paper's protocol (a seeded random sample);
* ``disagreement``: the highest expected SC error of an ensemble (where its members disagree most);
* ``sc``: the lowest SC[RPA;IPA] predicted by the SC model (where RPA changes the spectrum most);
* ``diversity``: k-center greedy in the model's latent space (each pick the candidate farthest from
  everything chosen or labelled so far), a batch that covers the space instead of one region.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

ACQUISITIONS = ("random", "disagreement", "sc", "diversity")


def select_random(n_pool: int, k: int, seed: int) -> list[int]:
    """``k`` positions of a pool of ``n_pool``, drawn with ``random.Random(seed)``."""
    return sorted(random.Random(seed).sample(range(n_pool), min(k, n_pool)))


def select_top(scores: Sequence[float] | np.ndarray, k: int) -> list[int]:
    """The positions of the ``k`` highest scores (ties by position)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [int(i) for i in order[:k]]


def k_center_greedy(pool: torch.Tensor | np.ndarray, labelled: torch.Tensor | np.ndarray, k: int,
                    chunk: int = 4096) -> list[int]:
    """``k`` positions of ``pool`` [n, d], each the farthest (Euclidean) from the labelled points [m, d] and
    from the picks so far: the greedy 2-approximation of the k-center (core-set) problem."""
    pool = torch.as_tensor(pool, dtype=torch.float32)
    labelled = torch.as_tensor(labelled, dtype=torch.float32)
    if len(labelled):
        nearest = torch.cat([torch.cdist(pool[i:i + chunk], labelled).min(dim=1).values
                             for i in range(0, len(pool), chunk)])
    else:
        nearest = torch.full((len(pool),), float("inf"))
    picks: list[int] = []
    for _ in range(min(k, len(pool))):
        j = int(torch.argmax(nearest))
        picks.append(j)
        nearest = torch.minimum(nearest, torch.cdist(pool, pool[j:j + 1]).squeeze(1))
        nearest[j] = -1.0
    return picks


def pick_distances(pool: torch.Tensor | np.ndarray, labelled: torch.Tensor | np.ndarray,
                   picks: Sequence[int]) -> np.ndarray:
    """For each pick of :func:`k_center_greedy`, in order, its distance to the nearest labelled point or earlier
    pick (what made it the farthest when it was picked; ``inf`` for a first pick with nothing labelled)."""
    pool = torch.as_tensor(pool, dtype=torch.float32)
    labelled = torch.as_tensor(labelled, dtype=torch.float32)
    chosen = pool[list(picks)]
    if not len(chosen):
        return np.zeros(0)
    to_labelled = torch.cdist(chosen, labelled).min(dim=1).values if len(labelled) else \
        torch.full((len(chosen),), float("inf"))
    to_earlier = torch.cdist(chosen, chosen).masked_fill(~torch.ones(len(chosen), len(chosen)).tril(-1).bool(),
                                                         float("inf")).min(dim=1).values
    return torch.minimum(to_labelled, to_earlier).numpy().astype(np.float64)

