"""Running a user's pipeline script for the command line, and showing its errors in its own terms.

`ScriptRun` runs a script as `python SCRIPT ARGS` would, on a thread of its
own, so the command line's main thread stays free for the live view and for
Ctrl-C. `capture_submissions()` makes `env.submit()` compile the pipeline
and stop the script there, without running anything (for `sage-kernel
graph`). `format_user_exception()` prints a traceback without the frames of
sage-kernel and of the launcher, so a user sees the lines they wrote.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from ..runtime.backend.local_backend import python_queue_factory
from ..runtime.graph import ExecutionGraph
from ..runtime.job_manager import JobListener, job_manager
from ..runtime.spec import JobSpec

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LAUNCHER_FILES = {"<frozen runpy>", os.path.abspath(runpy.__file__), os.path.abspath(threading.__file__)}


class ScriptRun:
    """One run of `script` with `args` as its argv, on a daemon thread.

    While it runs, `sys.argv` is `[script, *args]` and the script's folder
    leads `sys.path`; `restore()` puts both back (call it once the jobs the
    script left running have ended: they may still use its modules).
    `done` is set when the script has returned; then `exit_status` is what
    `python SCRIPT` would exit with (0, `sys.exit`'s code, or 1 when it
    raised) and `error` the exception it raised (None after a normal end or
    `sys.exit`), and `on_done()` is called. A daemon thread: a process
    ending with the script still running (Ctrl-C pressed three times) does
    not wait for it.
    """

    def __init__(self, script: str, args: list[str], on_done: Callable[[], None] | None = None) -> None:
        self.script = os.path.abspath(script)
        self.args = list(args)
        self.on_done = on_done
        self.done = threading.Event()
        self.exit_status: int | None = None
        self.error: BaseException | None = None
        self._saved: tuple[list[str], list[str]] | None = None
        self._thread = threading.Thread(target=self._run, name="sage-kernel-script", daemon=True)

    def start(self) -> ScriptRun:
        """Start the script's thread; returns at once."""
        self._enter()
        self._thread.start()
        return self

    def run_here(self) -> ScriptRun:
        """Run the script on the calling thread instead; returns when it has ended."""
        self._enter()
        self._run()
        return self

    def _enter(self) -> None:
        self._saved = (sys.argv, list(sys.path))
        sys.argv = [self.script, *self.args]
        sys.path.insert(0, os.path.dirname(self.script))

    def restore(self) -> None:
        """Put `sys.argv` and `sys.path` back as they were before `start()`."""
        if self._saved is not None:
            sys.argv, sys.path[:] = self._saved[0], self._saved[1]
            self._saved = None

    def _run(self) -> None:
        try:
            runpy.run_path(self.script, run_name="__main__")
            self.exit_status = 0
        except SystemExit as exc:
            self.exit_status = exit_status(exc.code)
        except BaseException as exc:  # the user's error, reported by whoever started the run
            self.error = exc
            self.exit_status = 1
        finally:
            self.done.set()
            if self.on_done is not None:
                self.on_done()


def exit_status(code: Any) -> int:
    """The process exit status `sys.exit(code)` means (None -> 0, int -> itself, else print it and 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _is_internal(filename: str) -> bool:
    path = os.path.abspath(filename)
    return filename in _LAUNCHER_FILES or path in _LAUNCHER_FILES or path.startswith(_PACKAGE_DIR + os.sep)


def format_user_exception(exc: BaseException, full: bool = False) -> str:
    """`exc`'s traceback (with its causes) as Python prints it, less sage-kernel's and the launcher's frames.

    What stays are the frames of the user's code: their script, their
    functions running in tasks, their other modules. With `full`, nothing is
    left out. A last line says when frames were hidden.
    """
    te = traceback.TracebackException.from_exception(exc)
    hidden = 0
    if not full:
        pending, seen = [te], set()
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            kept = [frame for frame in current.stack if not _is_internal(frame.filename)]
            hidden += len(current.stack) - len(kept)
            current.stack = traceback.StackSummary.from_list(kept)
            pending += [e for e in (current.__cause__, current.__context__) if e is not None]
            pending += getattr(current, "exceptions", None) or []
    text = "".join(te.format())
    if hidden:
        text += f"({hidden} frames of sage-kernel hidden; --full-traceback shows them)\n"
    return text


class SubmitIntercepted(BaseException):
    """Raised from `env.submit()` under `capture_submissions()`: the script ends there, nothing runs.

    A BaseException, so a script's `except Exception` does not swallow it.
    """

    def __init__(self, graph: ExecutionGraph) -> None:
        super().__init__(f"sage-kernel compiled job {graph.job_id!r} without running it")
        self.graph = graph


class _CompileOnly(JobListener):
    """Refuses every submission with `SubmitIntercepted`, carrying the job's compiled graph."""

    def before_submit(self, spec: JobSpec) -> None:
        config = spec.config
        raise SubmitIntercepted(ExecutionGraph(spec.name, spec.transformations, spec.services, python_queue_factory,
                                               config.queue_maxsize, config.service_queue_maxsize))


@contextlib.contextmanager
def capture_submissions() -> Iterator[None]:
    """While active, `env.submit()` compiles the pipeline and raises `SubmitIntercepted` with its graph.

    Whatever the environment (local or Ray), nothing starts (Ray is not even
    joined): the graph is compiled with in-process queue descriptors, which
    are never used. Pipeline errors (`PipelineError`) are raised as usual.
    Affects every thread of the process while active.
    """
    listener = _CompileOnly()
    job_manager().add_listener(listener)
    try:
        yield
    finally:
        job_manager().remove_listener(listener)
