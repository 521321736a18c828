"""What the actors of a Ray job print and log, in the driver's terminal, complete when the job ends.

Ray forwards every line a worker writes to its stdout or stderr to the
driver that owns it (`ray.init(log_to_driver=True)`, which `ensure_ray`
asks for), through each node's log monitor and the GCS, prefixed with the
actor's name (`(print_0 pid=1234) ...`). Two things are added here:

- **Logging like the driver's.** An actor's Python logging starts
  unconfigured. `driver_log_settings()` reads the driver's configuration
  (the root logger's level, handler level and format, and every explicitly
  set logger level); `apply_log_settings()` repeats it in the actor, with a
  stderr handler, so `self.logger.info(...)` shows in the driver exactly
  when it would on the local backend.
- **The job's output on stdout.** Ray's own messages (its raylet's warnings,
  ...) are forwarded too; they go to the driver's stderr, so that stdout
  holds what the job printed.
- **Nothing lost at the end.** Forwarding is asynchronous: a job can end,
  and its driver exit, before the last lines arrive. When its instance
  ends, an actor writes an end mark to its stdout and its stderr
  (`mark_output_end`), behind everything it wrote. The driver strips the
  marks from the forwarded lines before Ray prints them, and
  `OutputMarks.wait` returns once the marks, and with them every line
  before them, have been printed.

The driver side hooks into Ray's `global_worker_stdstream_dispatcher`
(not a public API): where it is missing, or when the driver does not
forward worker output, `OutputMarks.install` says so and nothing waits.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

OUTPUT_MARK = ":sage_kernel_output_end:"
"""Starts the line an actor writes after its last output; `OUTPUT_MARK + token`."""

RAY_PROCESSES = ("raylet", "gcs_server", "autoscaler", "runtime_env")
"""Where forwarded lines come from that are Ray's own messages, not the job's output (the `pid` field)."""

LogSettings = tuple[int, int | None, str | None, dict[str, int]]
"""(root level, root handler level or None without a handler, its format, explicit logger levels)."""


# ---------------------------------------------------------------------------- actor side
def driver_log_settings() -> LogSettings:
    """This process's logging configuration, as plain data an actor can repeat."""
    root = logging.getLogger()
    handler = root.handlers[0] if root.handlers else None
    fmt = None
    if handler is not None:
        formatter = handler.formatter or logging.Formatter()
        fmt = formatter._fmt
    levels = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
              if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
              and not name.startswith("ray")}
    return root.level, handler.level if handler is not None else None, fmt, levels


class _ForwardedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler `apply_log_settings` installs (recognised when it runs again)."""


def apply_log_settings(settings: LogSettings) -> None:
    """Configure this actor's logging as the driver's: levels, and a stderr handler with its format.

    Without a handler in the driver, none is added here either: Python's
    last-resort handler then prints warnings and errors to stderr, as it does
    in the driver. Safe to call again (the previous handler is replaced).
    """
    root_level, handler_level, fmt, levels = settings
    root = logging.getLogger()
    root.setLevel(root_level)
    for old in [h for h in root.handlers if isinstance(h, _ForwardedHandler)]:
        root.removeHandler(old)
    if handler_level is not None:
        handler = _ForwardedHandler(sys.stderr)
        handler.setLevel(handler_level)
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def mark_output_end(token: str) -> None:
    """Flush stdout and stderr and write the end mark of `token` behind what they hold.

    No line break goes before the mark: after output that did not end its
    line, the driver finds the mark within that line and prints the rest (a
    line break of ours could reach the driver in an earlier batch than the
    mark, and print as an empty line)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        stream.write(f"{OUTPUT_MARK}{token}\n")
        stream.flush()


# ---------------------------------------------------------------------------- driver side
class OutputMarks:
    """The end marks the driver has seen, by (token, from stderr).

    Two handlers around Ray's printer: the first strips the marks from each
    forwarded batch (Ray prints the rest), the last records them once the
    batch is printed, and wakes `wait`.
    """

    def __init__(self) -> None:
        self._seen: set[tuple[str, bool]] = set()
        self._printing: list[tuple[str, bool]] = []
        self._cond = threading.Condition()

    def install(self) -> bool:
        """Put the handlers around Ray's printer of worker output; False when the driver does not
        forward worker output (then no mark is ever seen: write none, wait for none)."""
        try:
            from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
        except ImportError:
            return False
        handlers = getattr(dispatcher, "handlers", None)
        lock = getattr(dispatcher, "_lock", None)
        if not isinstance(handlers, list) or lock is None:
            return False
        with lock:
            others = [(name, h) for name, h in dispatcher.handlers
                      if name not in ("sage_strip_output_marks", "sage_seen_output_marks")]
            if not any(name == "ray_print_logs" for name, _ in others):
                return False
            dispatcher.handlers = [("sage_strip_output_marks", self._strip), *others,
                                   ("sage_seen_output_marks", self._printed)]
        return True

    def _strip(self, data: dict[str, Any]) -> None:
        if data.get("pid") in RAY_PROCESSES:
            data["is_err"] = True
            return
        lines = data.get("lines")
        if not lines or not any(OUTPUT_MARK in line for line in lines):
            return
        kept = []
        for line in lines:
            at = line.find(OUTPUT_MARK)
            if at < 0:
                kept.append(line)
                continue
            self._printing.append((line[at + len(OUTPUT_MARK):], bool(data.get("is_err"))))
            if line[:at]:
                kept.append(line[:at])  # output that did not end its line
        data["lines"] = kept

    def _printed(self, data: dict[str, Any]) -> None:
        if not self._printing:
            return
        with self._cond:
            self._seen.update(self._printing)
            self._printing.clear()
            self._cond.notify_all()

    def wait(self, tokens: Iterable[str], timeout: float) -> list[str]:
        """Block until the stdout and stderr marks of every token are printed, at most `timeout`
        seconds; return the tokens still missing (and forget the others)."""
        wanted = {(token, is_err) for token in tokens for is_err in (False, True)}
        deadline = time.monotonic() + timeout
        with self._cond:
            while not wanted <= self._seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            missing = sorted({token for token, is_err in wanted - self._seen})
            self._seen -= wanted
            return missing


OUTPUT_MARKS = OutputMarks()
"""The driver process's marks (one set of handlers serves every job)."""
