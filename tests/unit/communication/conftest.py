"""Fixtures for the communication tests: queues and routers that clean up after themselves."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sage.kernel.runtime.communication import Connection, PythonQueueDescriptor


@pytest.fixture
def make_queue() -> Callable[..., PythonQueueDescriptor]:
    """Factory for PythonQueueDescriptors that are closed (dropped from the registry) after the test."""
    made: list[PythonQueueDescriptor] = []

    def make(maxsize: int = 0, queue_id: str | None = None) -> PythonQueueDescriptor:
        descriptor = PythonQueueDescriptor(maxsize=maxsize, queue_id=queue_id)
        made.append(descriptor)
        return descriptor

    yield make
    for descriptor in made:
        descriptor.close()


@pytest.fixture
def make_groups(make_queue) -> Callable[..., dict[int, dict[int, Connection]]]:
    """Factory for router groups: `make_groups({0: 3, 1: 2}, maxsize=0, input_indices={1: 1})`.

    Group `b` gets `sizes[b]` connections named `g{b}_{p}`, each with its own
    queue; `input_indices[b]` is the target input index of group `b` (default 0).
    """

    def make(sizes: dict[int, int], maxsize: int = 0, input_indices: dict[int, int] | None = None):
        input_indices = input_indices or {}
        return {
            b: {
                p: Connection(b, p, f"g{b}_{p}", make_queue(maxsize), input_indices.get(b, 0))
                for p in range(size)
            }
            for b, size in sizes.items()
        }

    return make
