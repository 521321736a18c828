"""Helpers for the command-line tests: the installed console script and user scripts written to a folder."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path


def console_script() -> str:
    """The installed `sage-kernel` console script (the one next to this Python)."""
    script = Path(sys.executable).with_name("sage-kernel")
    command = str(script) if script.exists() else shutil.which("sage-kernel")
    assert command, "the sage-kernel console script is not installed (pip install -e .)"
    return command


def write_script(tmp_path: Path, body: str, name: str = "pipeline.py") -> Path:
    """Write `body` (dedented) as a script in `tmp_path`; returns its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path
