"""examples/rag_async.py runs as a reader would run it, and answers every question from the right note."""

from __future__ import annotations

import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[3] / "examples" / "rag_async.py"


def test_the_rag_example_answers_every_question_from_the_closest_note(tmp_path: pathlib.Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:8] == [
        "Q: When is the lighthouse lamp lit?",
        "A: From my notes: The lighthouse lamp is lit at dusk and turned off at dawn.",
        "Q: What does the river carry to the mill?",
        "A: From my notes: The river carries stone and sand down to the mill in spring.",
        "Q: When is bread baked in the village?",
        "A: From my notes: Bread is baked in the village oven every morning before market.",
        "Q: How often does the ferry cross the harbor?",
        "A: From my notes: The ferry crosses the harbor twice a day when the wind allows.",
    ]
    assert lines[8] == "embedder: 8 texts; retrieval: 4 calls"
    assert done.stderr.startswith("measured: ") and " model calls for 8 texts; retrieval p50 " in done.stderr
