"""ray_output without Ray: end marks written, stripped and awaited; logging settings carried over."""

from __future__ import annotations

import logging
import threading

import pytest

from sage.kernel.runtime.backend.ray_output import (
    OUTPUT_MARK,
    OutputMarks,
    apply_log_settings,
    driver_log_settings,
    mark_output_end,
)


def forward(marks: OutputMarks, lines: list[str], is_err: bool = False) -> list[str]:
    """One forwarded batch through the handlers around Ray's printer; returns what the printer gets."""
    data = {"lines": lines, "is_err": is_err, "pid": 1}
    marks._strip(data)
    printed = list(data["lines"])
    marks._printed(data)
    return printed


def test_marks_are_stripped_and_the_rest_printed(capsys):
    mark_output_end("job/map_0")
    out, err = capsys.readouterr()
    assert out == err == f"{OUTPUT_MARK}job/map_0\n"  # no line break of ours: it could arrive in a batch of its own

    marks = OutputMarks()
    assert forward(marks, ["1", "2", f"{OUTPUT_MARK}job/map_0"]) == ["1", "2"]
    assert forward(marks, ["an empty line follows", "", f"{OUTPUT_MARK}job/sink_0"]) == ["an empty line follows", ""]
    assert forward(marks, [f"no line end{OUTPUT_MARK}job/map_0"], is_err=True) == ["no line end"]
    assert forward(marks, ["plain output"]) == ["plain output"]
    assert marks.wait(["job/map_0"], timeout=0) == []
    assert marks.wait(["job/sink_0"], timeout=0) == ["job/sink_0"]  # its stderr mark never came


def test_wait_returns_once_a_later_batch_brings_the_marks():
    marks = OutputMarks()
    missing: list[list[str]] = []
    waiter = threading.Thread(target=lambda: missing.append(marks.wait(["job/a"], timeout=60)))
    waiter.start()
    forward(marks, [f"{OUTPUT_MARK}job/a"])
    forward(marks, [f"{OUTPUT_MARK}job/a"], is_err=True)
    waiter.join(60)
    assert missing == [[]]


@pytest.fixture
def clean_logging():
    """Put the root logger and the kernel's loggers back as they were."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    named = {name: logging.getLogger(name).level for name in ("sage.kernel", "sage.kernel.user")}
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, level in named.items():
        logging.getLogger(name).setLevel(level)


def test_an_actor_logs_as_the_driver_configured_logging(clean_logging, capsys):
    root = logging.getLogger()
    root.handlers[:] = []
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("sage.kernel.user").setLevel(logging.DEBUG)
    settings = driver_log_settings()
    assert settings == (logging.INFO, logging.NOTSET, "%(levelname)s %(name)s: %(message)s",
                        {**settings[3], "sage.kernel.user": logging.DEBUG})

    root.handlers[:] = []  # what an actor starts with
    root.setLevel(logging.WARNING)
    logging.getLogger("sage.kernel.user").setLevel(logging.NOTSET)
    apply_log_settings(settings)
    apply_log_settings(settings)  # again: still one handler
    logging.getLogger("sage.kernel.user.map_0").debug("debug %d", 1)
    logging.getLogger("elsewhere").info("info %d", 2)
    logging.getLogger("elsewhere").debug("not shown")
    assert capsys.readouterr().err.splitlines() == ["DEBUG sage.kernel.user.map_0: debug 1", "INFO elsewhere: info 2"]


def test_without_a_handler_in_the_driver_none_is_added(clean_logging):
    root = logging.getLogger()
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    settings = driver_log_settings()
    assert settings[:3] == (logging.WARNING, None, None)
    apply_log_settings(settings)
    assert root.handlers == []


def test_rays_own_messages_go_to_stderr():
    data = {"lines": ["WARNING: 10 PYTHON worker processes have been started"], "is_err": False, "pid": "raylet"}
    OutputMarks()._strip(data)
    assert data["is_err"] is True and data["lines"] == ["WARNING: 10 PYTHON worker processes have been started"]
