"""Every Python block in README.md and docs/*.md runs as written, alone, in a fresh interpreter.

A block is run as a script in a new process, in an empty working directory,
so a block that leans on another block's imports or variables fails here as
it would for a reader who pastes it. A block may be marked by an HTML comment
on the line before its opening fence:

- `<!-- docs-test: skip REASON -->`: deliberately partial (a fragment of a
  class, a signature); skipped with the reason;
- `<!-- docs-test: ray -->`: needs Ray; runs with the other Ray tests (a local
  Ray bound to 127.0.0.1, started by the block's own environment).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK_TIMEOUT = 240.0
"""Seconds a block may run; far above what any documented example needs."""

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_MARK = re.compile(r"<!--\s*docs-test:\s*(skip|ray)\b\s*(.*?)\s*-->\s*$")


def _blocks() -> list:
    params = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = _MARK.search(before)
            marks = []
            if mark and mark.group(1) == "skip":
                marks.append(pytest.mark.skip(reason=mark.group(2) or "marked skip"))
            elif mark and mark.group(1) == "ray":
                marks += [pytest.mark.ray, pytest.mark.slow]
            name = f"{page.relative_to(ROOT)}:{line}"
            params.append(pytest.param(match.group(1), id=name, marks=marks))
    return params


BLOCKS = _blocks()


def test_the_pages_have_python_blocks() -> None:
    assert len(BLOCKS) >= 10, "the extractor found almost nothing: is the fence pattern still right?"


@pytest.mark.parametrize("code", BLOCKS)
def test_block_runs_alone(code: str, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT, check=False)
    assert done.returncode == 0, f"the block failed:\n{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
