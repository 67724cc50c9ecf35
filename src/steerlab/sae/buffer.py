"""A shuffling activation buffer: mixes tokens from many documents so a training batch is not one text.

The buffer holds `capacity` activations. Batches are drawn from a random permutation of the whole
buffer; after `capacity/2 * reuse` draws the oldest half is replaced with freshly harvested
activations. `reuse` > 1 trades data for compute when harvesting (the model forward) is the
bottleneck, as on a CPU: each activation is then seen about `reuse` times.
"""

from __future__ import annotations

from typing import Iterator

import torch

from steerlab.errors import SteerlabError


class ShufflingBuffer:
    """Serve shuffled mini-batches from a stream of [n, d] activation chunks."""

    def __init__(self, chunks: Iterator[torch.Tensor], capacity: int, d: int, *, reuse: float = 1.0, seed: int = 0):
        if capacity < 2:
            raise SteerlabError("The activation buffer needs room for at least 2 tokens.")
        if reuse <= 0:
            raise SteerlabError("reuse must be positive.")
        self._chunks = chunks
        self._spill: torch.Tensor | None = None
        self.capacity, self.reuse = capacity, reuse
        self.data = torch.empty(capacity, d)
        self.gen = torch.Generator().manual_seed(seed)
        self.harvested = 0
        self.exhausted = False
        self._oldest = 0  # start of the older half, replaced next
        self._fill(0, capacity)
        self._perm = torch.randperm(self.capacity, generator=self.gen)
        self._cursor = 0
        self._served = 0

    def state_dict(self) -> dict:
        """Everything needed to continue serving exactly the same batches (for training checkpoints)."""
        return {
            "data": self.data.clone(),
            "capacity": self.capacity,
            "reuse": self.reuse,
            "gen": self.gen.get_state(),
            "exhausted": self.exhausted,
            "oldest": self._oldest,
            "perm": self._perm.clone(),
            "cursor": self._cursor,
            "served": self._served,
            "spill": self._spill,
        }

    @classmethod
    def restore(cls, chunks: Iterator[torch.Tensor], state: dict) -> "ShufflingBuffer":
        """A buffer continuing from state_dict(), reading further chunks from `chunks` (the stream resumed where it was)."""
        buf = cls.__new__(cls)
        buf._chunks, buf._spill = chunks, state["spill"]
        buf.capacity, buf.reuse, buf.data = state["capacity"], state["reuse"], state["data"]
        buf.gen = torch.Generator()
        buf.gen.set_state(state["gen"])
        buf.harvested, buf.exhausted = 0, state["exhausted"]
        buf._oldest, buf._perm, buf._cursor, buf._served = (
            state["oldest"],
            state["perm"],
            state["cursor"],
            state["served"],
        )
        return buf

    def _take(self, n: int) -> torch.Tensor:
        """Up to n fresh activations from the stream (fewer only when the stream ends)."""
        parts, got = [], 0
        while got < n:
            if self._spill is not None:
                chunk, self._spill = self._spill, None
            else:
                try:
                    chunk = next(self._chunks)
                except StopIteration:
                    self.exhausted = True
                    break
            if chunk.shape[0] > n - got:
                chunk, self._spill = chunk[: n - got], chunk[n - got :]
            parts.append(chunk)
            got += chunk.shape[0]
        self.harvested += got
        return torch.cat(parts) if parts else torch.empty(0, self.data.shape[1])

    def _fill(self, start: int, stop: int) -> None:
        fresh = self._take(stop - start)
        if fresh.shape[0] == 0 and start == 0 and stop == self.capacity:
            raise SteerlabError("The corpus yielded no usable tokens (all special or empty).")
        n = fresh.shape[0]
        self.data[start : start + n] = fresh
        if n < stop - start:  # stream ended: keep serving what we have by repeating it
            if start == 0 and n < self.capacity:
                self.capacity = n
                self.data = self.data[:n]

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """A [batch_size, d] batch drawn without replacement from the current buffer contents."""
        if self._served >= self.capacity // 2 * self.reuse and not self.exhausted:
            half = self.capacity // 2
            self._fill(self._oldest, self._oldest + half)
            self._oldest = half if self._oldest == 0 else 0
            self._served = 0
        if self._cursor + batch_size > self.capacity:
            self._perm = torch.randperm(self.capacity, generator=self.gen)
            self._cursor = 0
        idx = self._perm[self._cursor : self._cursor + min(batch_size, self.capacity)]
        self._cursor += batch_size
        self._served += batch_size
        return self.data[idx]
