"""A crashed driver resumes from the last complete checkpoint: SIGKILL at random moments, stop and resume,
a finished job, a pipeline of another shape, and the `sage-kernel checkpoints` listing."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from sage.kernel import LocalEnvironment, PipelineError
from sage.kernel.api.function import MapFunction
from sage.kernel.cli import main
from sage.kernel.testing import TestingSource

from .wordcount_job import committed_output, expected_output, final_counts, write_input

HERE = pathlib.Path(__file__).parent
JOB_SCRIPT = HERE / "wordcount_job.py"
RUN_TIMEOUT = 300.0


def start(input_dir: str, out: str, checkpoints: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent.parent.parent), *sys.path])}
    return subprocess.Popen([sys.executable, str(JOB_SCRIPT), input_dir, out, checkpoints], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killed_at_random_moments_and_started_again_the_output_is_exactly_once(tmp_path: pathlib.Path) -> None:
    totals = write_input(str(tmp_path / "in"), files=4, lines=40_000)
    out, checkpoints = str(tmp_path / "out"), str(tmp_path / "ck")
    seed = random.randrange(2**32)
    moments = random.Random(seed).sample([0.4, 0.7, 1.0, 1.4, 1.8], 4)
    kills = 0
    for moment in moments:
        process = start(str(tmp_path / "in"), out, checkpoints)
        try:
            process.wait(moment)  # the moment to kill at, not a synchronisation: any moment must do
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(RUN_TIMEOUT)
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL, process.stderr.read()
    else:
        process = start(str(tmp_path / "in"), out, checkpoints)  # the last run goes to the end
        _, stderr = process.communicate(timeout=RUN_TIMEOUT)
        assert process.returncode == 0, f"seed {seed}: {stderr}"
    assert kills >= 1, f"seed {seed}: the job ended before the first kill; make it longer"
    output = Counter(committed_output(out))
    expected = expected_output(totals)
    assert output == expected, (f"seed {seed}, moments {moments}: "
                                f"{sum((expected - output).values())} records missing, "
                                f"{sum((output - expected).values())} repeated")
    assert final_counts(checkpoints) == totals


class Slow(MapFunction):
    def execute(self, record: int) -> int:
        time.sleep(0.0002)  # the work of a real map, so that the job is still running when it is stopped
        return record


def stoppable(checkpoints: str, name: str = "stop-resume") -> tuple[LocalEnvironment, object]:
    env = LocalEnvironment(name, config={"checkpoint_interval": 0.05, "checkpoint_dir": checkpoints})
    results = env.from_source(TestingSource, list(range(20_000))).map(Slow).collect()
    return env, results


def test_a_stopped_job_resumes_where_its_sources_stopped(tmp_path: pathlib.Path) -> None:
    env, results = stoppable(str(tmp_path))
    job = env.submit()
    first = []
    for record in results:
        first.append(record)
        if len(first) == 3000:
            job.stop()
    assert job.wait(RUN_TIMEOUT) == "finished" and job.metrics()["job"]["checkpoints"]["last_status"] == "stopped"
    assert first == list(range(len(first))) and len(first) < 20_000

    env, results = stoppable(str(tmp_path))
    job = env.submit(autostop=True)
    assert job.metrics()["job"]["restored_from"] is not None
    assert list(results) == list(range(len(first), 20_000))  # the rest, once


def test_a_finished_job_resumed_does_nothing_more_and_resume_false_runs_it_again(tmp_path: pathlib.Path) -> None:
    env, results = stoppable(str(tmp_path), "finished-job")
    env.submit(autostop=True)
    assert len(list(results)) == 20_000
    env, results = stoppable(str(tmp_path), "finished-job")
    env.submit(autostop=True)
    assert list(results) == []
    env, results = stoppable(str(tmp_path), "finished-job")
    env.submit(autostop=True, resume=False)
    assert len(list(results)) == 20_000


def test_a_checkpoint_of_another_pipeline_shape_is_refused(tmp_path: pathlib.Path) -> None:
    env, _ = stoppable(str(tmp_path), "shape")
    job = env.submit()
    job.stop()
    job.wait(RUN_TIMEOUT)
    other = LocalEnvironment("shape", config={"checkpoint_interval": 0.05, "checkpoint_dir": str(tmp_path)})
    other.from_source(TestingSource, list(range(10))).map(Slow, parallelism=2).collect()
    with pytest.raises(PipelineError, match=r"differently shaped pipeline \(operator 'Slow' parallelism was 1, "
                                            r"is 2\); submit\(resume=False\) starts over"):
        other.submit()


def test_the_command_line_lists_the_checkpoints(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    env, _ = stoppable(str(tmp_path), "listed")
    env.submit(autostop=True)
    assert main(["checkpoints", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["job", "run", "id"]
    assert any(line.startswith("listed") and line.endswith("finished") for line in lines[1:])
    assert main(["checkpoints", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoints in" in capsys.readouterr().err
