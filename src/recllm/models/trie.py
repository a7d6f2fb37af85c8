"""A prefix trie of valid code tuples and beam search constrained by it, so generation only yields real items.

The trie is stored as one dense transition table per level (node x code -> child node, -1 when invalid), so a
whole batch of beams is masked with one indexing operation. Memory is about nodes x codes x 4 bytes per
level: fine for catalogues of tens of thousands of items with 256-code levels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recllm.errors import ConfigError

StepFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(query index of each row (rows,), prefix codes (rows, t)) -> log-probs (rows, >= level size) of code t."""


class CodeTrie:
    """All prefixes of the code tuples ``codes`` (n_items, depth); a full tuple leads to its item index."""

    def __init__(self, codes: np.ndarray, level_sizes: Sequence[int] | None = None) -> None:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] < 1 or len(codes) == 0:
            raise ConfigError(f"code trie: codes must be a non-empty (n_items, depth) array, got {codes.shape}")
        if codes.min() < 0:
            raise ConfigError("code trie: codes must be non-negative")
        sizes = tuple(int(s) for s in (level_sizes or codes.max(0) + 1))
        if len(sizes) != codes.shape[1] or any(int(codes[:, t].max()) >= sizes[t] for t in range(len(sizes))):
            raise ConfigError(f"code trie: level sizes {sizes} do not cover the codes")
        self.depth = codes.shape[1]
        self.level_sizes = sizes
        self.n_items = len(codes)
        # node of every item at each depth t (prefix of length t); depth 0 is the root (node 0)
        self.item_nodes: list[np.ndarray] = [np.zeros(self.n_items, dtype=np.int64)]
        for t in range(1, self.depth):
            _, inverse = np.unique(codes[:, :t], axis=0, return_inverse=True)
            self.item_nodes.append(inverse.ravel().astype(np.int64))
        self.item_nodes.append(np.arange(self.n_items, dtype=np.int64))  # leaves are the items themselves
        self.tables: list[np.ndarray] = []
        for t in range(self.depth):
            n_nodes = int(self.item_nodes[t].max()) + 1
            table = np.full((n_nodes, sizes[t]), -1, dtype=np.int64)
            table[self.item_nodes[t], codes[:, t]] = self.item_nodes[t + 1]
            self.tables.append(table)
        if (self.tables[-1] >= 0).sum() != self.n_items:
            raise ConfigError("code trie: two items share a code tuple; add the collision level first")
        # how many items lie under each node, per depth (to know when every item below is excluded)
        self.leaf_counts = [np.bincount(nodes) for nodes in self.item_nodes]

    def child(self, prefix: Sequence[int]) -> int:
        """Node reached by ``prefix`` (an item index for a full tuple), or -1 if it is not a valid prefix."""
        node = 0
        for t, code in enumerate(prefix):
            if t >= self.depth or not 0 <= code < self.level_sizes[t]:
                return -1
            node = int(self.tables[t][node, code])
            if node < 0:
                return -1
        return node

    def is_valid_prefix(self, prefix: Sequence[int]) -> bool:
        """Whether some item's code tuple starts with ``prefix`` (the empty prefix included)."""
        return self.child(prefix) >= 0

    def item_of(self, codes: Sequence[int]) -> int | None:
        """Item index of a complete tuple, None when it names no item."""
        if len(codes) != self.depth:
            return None
        node = self.child(codes)
        return node if node >= 0 else None

    def allowed(self, prefix: Sequence[int]) -> np.ndarray:
        """Codes that may follow ``prefix`` (empty for an invalid or complete prefix)."""
        node = self.child(prefix)
        if node < 0 or len(prefix) >= self.depth:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.tables[len(prefix)][node] >= 0)

    def dead_nodes(self, excluded: np.ndarray, depth: int) -> np.ndarray:
        """Nodes at ``depth`` (1..depth) all of whose items are in ``excluded`` (item indices)."""
        excluded = np.unique(np.asarray(excluded, dtype=np.int64))
        if len(excluded) == 0:
            return np.zeros(0, dtype=np.int64)
        nodes, counts = np.unique(self.item_nodes[depth][excluded], return_counts=True)
        return nodes[counts == self.leaf_counts[depth][nodes]]


@dataclass(frozen=True)
class BeamResult:
    """Finished beams per query, best first: item indices (-1 pads) and summed log-probabilities (-inf pads).

    ``invalid`` counts finished beams that named no item (0 by construction); ``masked_preferences`` counts
    steps at which the model's own best code was not a valid continuation (how often the trie intervened).
    """

    items: np.ndarray
    scores: np.ndarray
    invalid: int
    masked_preferences: int


def constrained_beam_search(step: StepFunction, trie: CodeTrie, n_queries: int, beam_size: int,
                            excluded: Sequence[np.ndarray] | None = None) -> BeamResult:
    """Beam search over code tuples where every step may only extend a beam along the trie.

    ``step`` gives next-code log-probs for a batch of (query, prefix) rows; codes the trie does not allow
    are set to -inf before the beams are chosen, so each finished beam is a real item. ``excluded[q]``
    (item indices, e.g. the user's history) removes those items from query q's search, and with them
    every prefix all of whose items are excluded, so no beam is spent on them. Ties go to the lower code.
    """
    if beam_size < 1:
        raise ConfigError(f"beam search: beam_size must be at least 1, got {beam_size}")
    if excluded is not None and len(excluded) != n_queries:
        raise ConfigError(f"beam search: {len(excluded)} exclusion lists for {n_queries} queries")
    width = 1
    nodes = np.zeros((n_queries, 1), dtype=np.int64)
    scores = np.zeros((n_queries, 1), dtype=np.float64)
    prefixes = np.zeros((n_queries, 1, 0), dtype=np.int64)
    masked_preferences = 0
    invalid = 0
    queries = np.arange(n_queries)
    for t in range(trie.depth):
        size = trie.level_sizes[t]
        live = np.isfinite(scores)
        rows_q, rows_b = np.nonzero(live)
        if len(rows_q) == 0:  # every item excluded: nothing left to generate
            return BeamResult(np.full((n_queries, 0), -1, dtype=np.int64), np.zeros((n_queries, 0)), invalid,
                              masked_preferences)
        logp = np.asarray(step(rows_q, prefixes[rows_q, rows_b]), dtype=np.float64)
        if logp.ndim != 2 or logp.shape[0] != len(rows_q) or logp.shape[1] < size:
            raise ConfigError(f"beam search: step returned shape {logp.shape}, expected ({len(rows_q)}, >= {size})")
        logp = np.nan_to_num(logp[:, :size], nan=-np.inf)
        children = trie.tables[t][nodes[rows_q, rows_b]]  # (rows, size), -1 where not a valid prefix
        valid = children >= 0
        if excluded is not None:
            dead = _dead_mask(trie, excluded, rows_q, children, t + 1)
            valid &= ~dead
        masked_preferences += int((~valid[np.arange(len(rows_q)), logp.argmax(1)]).sum()) if len(rows_q) else 0
        candidate = np.full((n_queries, width, size), -np.inf)
        candidate[rows_q, rows_b] = np.where(valid, scores[rows_q, rows_b][:, None] + logp, -np.inf)
        flat = candidate.reshape(n_queries, width * size)
        new_width = min(beam_size, width * size)
        best = np.argsort(-flat, axis=1, kind="stable")[:, :new_width]
        new_scores = np.take_along_axis(flat, best, axis=1)
        parent, code = np.divmod(best, size)
        child_nodes = trie.tables[t][nodes[queries[:, None], parent], code]
        bad = np.isfinite(new_scores) & (child_nodes < 0)
        invalid += int(bad.sum())  # cannot happen: masked codes score -inf; counted to prove it
        new_scores[bad] = -np.inf
        prefixes = np.concatenate([prefixes[queries[:, None], parent], code[..., None]], axis=2)
        nodes, scores, width = np.where(child_nodes >= 0, child_nodes, 0), new_scores, new_width
    items = np.where(np.isfinite(scores), nodes, -1)
    return BeamResult(items, scores, invalid, masked_preferences)


def _dead_mask(trie: CodeTrie, excluded: Sequence[np.ndarray], rows_q: np.ndarray, children: np.ndarray,
               depth: int) -> np.ndarray:
    """True where a row's child node at ``depth`` has only excluded items below it."""
    n_nodes = len(trie.leaf_counts[depth])
    keys = [q * n_nodes + trie.dead_nodes(excluded[q], depth) for q in np.unique(rows_q)]
    dead_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    if len(dead_keys) == 0:
        return np.zeros(children.shape, dtype=bool)
    return (children >= 0) & np.isin(rows_q[:, None] * n_nodes + children, dead_keys)
