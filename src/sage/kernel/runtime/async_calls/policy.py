"""How an async operator makes its calls: capacity, timeout, retries, rate limit, order."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

DEFAULT_RETRY_ON: tuple[type[Exception], ...] = (ConnectionError,)
"""Exceptions retried unless the operator says otherwise (its own attempt timeouts are always retried)."""


class AttemptTimeout(TimeoutError):
    """An attempt ran out of its operator's `timeout` (not a `TimeoutError` raised by the function itself)."""


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class CallPolicy:
    """The call settings of one async operator (the same for each of its instances).

    - `capacity`: most records an instance holds at once, from the moment it
      takes one until its result is emitted (calls running, waiting for the
      rate limit or a retry, or done and waiting for their turn to be emitted);
      a full instance takes no input (backpressure).
    - `timeout`: seconds one attempt may take (None: no limit); for an async
      generator, seconds to wait for each next record.
    - `retries`, `backoff`: after a failed attempt, up to `retries` more, the
      k-th after `backoff * 2**(k-1)` seconds times a random factor in
      [0.5, 1.5) (jitter, so callers that failed together do not retry
      together). An attempt that ran out of `timeout` (`AttemptTimeout`) is
      always retryable; any other exception only when it is an instance of
      a class in `retry_on` (`Exception` subclasses: cancellation,
      `KeyboardInterrupt` and `SystemExit` are never retried). A
      `TimeoutError` the function raises itself is retried only when
      `retry_on` names it (or a base class of it).
    - `rate_limit`: most attempts started per second by one instance (None:
      no limit); attempts are spaced at least `1 / rate_limit` s apart.
    - `ordered`: emit results in input order (True) or as they complete.

    Raises `ValueError` naming the setting for a bad value.
    """

    capacity: int = 64
    timeout: float | None = None
    retries: int = 0
    backoff: float = 0.2
    retry_on: tuple[type[Exception], ...] = DEFAULT_RETRY_ON
    rate_limit: float | None = None
    ordered: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.capacity, int) or isinstance(self.capacity, bool) or self.capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {self.capacity!r}")
        if self.timeout is not None and not (_finite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be None or a finite number of seconds > 0, got {self.timeout!r}")
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {self.retries!r}")
        if not (_finite(self.backoff) and self.backoff >= 0):
            raise ValueError(f"backoff must be a finite number of seconds >= 0, got {self.backoff!r}")
        retry_on = (self.retry_on,) if isinstance(self.retry_on, type) else self.retry_on
        if not isinstance(retry_on, tuple) or not all(
                isinstance(cls, type) and issubclass(cls, Exception) for cls in retry_on):
            raise ValueError(f"retry_on must be an Exception subclass or a tuple of them (cancellation, "
                             f"KeyboardInterrupt and SystemExit are never retried), got {self.retry_on!r}")
        object.__setattr__(self, "retry_on", retry_on)  # one exception class given alone: keep a tuple
        if self.rate_limit is not None and not (_finite(self.rate_limit) and self.rate_limit > 0):
            raise ValueError(f"rate_limit must be None or a finite number of calls per second > 0, "
                             f"got {self.rate_limit!r}")
        if not isinstance(self.ordered, bool):
            raise ValueError(f"ordered must be True or False, got {self.ordered!r}")

    def retryable(self, error: BaseException) -> bool:
        """True when a failed attempt that raised `error` may be retried (retries left aside)."""
        return isinstance(error, (AttemptTimeout, *self.retry_on))

    def backoff_delay(self, retry: int, jitter: float) -> float:
        """Seconds to wait before retry number `retry` (1 for the first); `jitter` is a random number in [0, 1)."""
        return float(self.backoff * 2 ** (retry - 1) * (0.5 + jitter))
