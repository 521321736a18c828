"""Channel selectors: one small object per downstream group decides where its records go.

As Flink's `ChannelSelector`: a selector is set up with the number of
channels (the downstream operator's parallel instances) and then selects a
channel for each record, or says that it broadcasts. The execution graph
decides each edge's strategy; the router builds one selector per group from
it, so what `routing_info()` shows is what routing does.

Selectors also route whole runs of records at once (`split`), which is how
the runtime moves data: `split(payloads, keys)` returns, per channel, the
records it gets, in their original order (order per channel is kept).
"""

from __future__ import annotations

from typing import Any

from .packet import UNKEYED
from .partition_key import stable_hash

Split = list[tuple[int, list[Any], list[Any] | None]]
"""`(channel, payloads, keys)` per channel that gets records, keys None for an unkeyed run."""


class ChannelSelector:
    """Chooses the channel(s) of one downstream group for each record.

    `setup(n)` is called once with the group's channel count before any
    selection. `broadcasts` is True when every record goes to every channel
    (then `select_channel` is never asked). Not thread-safe: a selector
    belongs to one router, used by one thread.
    """

    strategy: str = ""
    broadcasts = False

    def setup(self, num_channels: int) -> None:
        if num_channels < 1:
            raise ValueError(f"a downstream group needs at least one channel, got {num_channels}")
        self.num_channels = num_channels

    def select_channel(self, key: Any = UNKEYED) -> int:
        """The channel of one record with partition key `key` (`UNKEYED` for a record without one)."""
        raise NotImplementedError

    def split(self, payloads: list[Any], keys: list[Any] | None) -> Split:
        """The records each channel gets, in order. May return `payloads`/`keys` themselves
        when one channel gets them all."""
        raise NotImplementedError


class RoundRobinSelector(ChannelSelector):
    """Spreads records evenly: record i of the stream goes to channel `(start + i) % n`."""

    strategy = "round_robin"

    def setup(self, num_channels: int) -> None:
        super().setup(num_channels)
        self.position = 0

    def select_channel(self, key: Any = UNKEYED) -> int:
        position = self.position
        self.position = 0 if position + 1 == self.num_channels else position + 1
        return position

    def split(self, payloads: list[Any], keys: list[Any] | None) -> Split:
        n = self.num_channels
        start = self.position
        count = len(payloads)
        self.position = (start + count) % n
        if n == 1:
            return [(0, payloads, keys)]
        split: Split = []
        for offset in range(min(n, count)):
            # Record `offset` goes to channel start + offset, and every n-th record after it too.
            split.append(((start + offset) % n, payloads[offset::n], None if keys is None else keys[offset::n]))
        return split


class HashSelector(RoundRobinSelector):
    """Sends every record of a key to the channel `stable_hash(key) % n`.

    Records without a key (`UNKEYED`, or a run with no keys at all: a
    flatmap's `close()` output, the unkeyed input of a "mixed" edge) go
    round-robin.
    """

    strategy = "hash"

    def select_channel(self, key: Any = UNKEYED) -> int:
        if key is UNKEYED:
            return super().select_channel()
        return stable_hash(key) % self.num_channels

    def split(self, payloads: list[Any], keys: list[Any] | None) -> Split:
        n = self.num_channels
        if keys is None:
            return super().split(payloads, None)
        if n == 1:
            return [(0, payloads, keys)]
        by_channel: list[tuple[list[Any], list[Any]]] = [([], []) for _ in range(n)]
        for payload, key in zip(payloads, keys, strict=True):
            if key is UNKEYED:
                channel = self.position
                self.position = 0 if channel + 1 == n else channel + 1
            else:
                channel = stable_hash(key) % n
            bucket = by_channel[channel]
            bucket[0].append(payload)
            bucket[1].append(key)
        return [(channel, bucket[0], bucket[1]) for channel, bucket in enumerate(by_channel) if bucket[0]]


class BroadcastSelector(ChannelSelector):
    """Sends every record to every channel."""

    strategy = "broadcast"
    broadcasts = True

    def select_channel(self, key: Any = UNKEYED) -> int:
        raise TypeError("a broadcast selector has no single channel for a record")

    def split(self, payloads: list[Any], keys: list[Any] | None) -> Split:
        return [(channel, payloads, keys) for channel in range(self.num_channels)]


SELECTORS: dict[str, type[ChannelSelector]] = {
    "round_robin": RoundRobinSelector,
    "hash": HashSelector,
    "mixed": HashSelector,  # hash for keyed records, round-robin for the others
    "broadcast": BroadcastSelector,
}
"""Selector class per edge strategy, as the execution graph names them."""

STRATEGIES = tuple(SELECTORS)


def make_selector(strategy: str, num_channels: int) -> ChannelSelector:
    """A selector for `strategy`, set up for `num_channels` channels.

    Raises `ValueError` naming the strategy when it is unknown.
    """
    cls = SELECTORS.get(strategy)
    if cls is None:
        raise ValueError(f"unknown routing strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    selector = cls()
    selector.setup(num_channels)
    return selector
