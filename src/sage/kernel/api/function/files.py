"""Files in and out: a source whose position is checkpointed, a sink that commits with checkpoints.

With both, the common "read files, aggregate, write files" job is
exactly-once end to end without user code for state: after any failure and
restart (or a crash and resume) the committed output holds every record once.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any

from .source_function import BatchFunction
from .transform_function import SinkFunction

FORMATS = ("text", "jsonl")


class FileSource(BatchFunction):
    """Reads a file, or every file of a directory in name order: one record per line.

    `env.from_batch(FileSource, path, format="text")`. `format="text"`
    gives each line as a str (without its line break); `"jsonl"` parses each
    non-empty line as JSON. With `parallelism=n`, instance i reads files i,
    i+n, ... of the sorted list (hidden files and subdirectories skipped), so
    a single file is read by instance 0 alone. Its position (file, byte
    offset) is its state: a checkpointed job resumes mid-file.

    Raises `FileNotFoundError` at `open()` when `path` does not exist, and
    `ValueError` for an unknown format or (jsonl) a line that is not JSON.
    """

    def __init__(self, path: str, format: str = "text") -> None:
        if format not in FORMATS:
            raise ValueError(f"FileSource format must be one of {', '.join(FORMATS)}, got {format!r}")
        self.path = path
        self.format = format
        self.file_index = 0
        self.offset = 0
        self._files: list[str] = []
        self._handle: IO[bytes] | None = None

    def open(self) -> None:
        if os.path.isdir(self.path):
            names = sorted(n for n in os.listdir(self.path) if not n.startswith("."))
            files = [os.path.join(self.path, n) for n in names if os.path.isfile(os.path.join(self.path, n))]
        elif os.path.exists(self.path):
            files = [self.path]
        else:
            raise FileNotFoundError(f"FileSource: no file or directory {self.path!r}")
        parallelism = self.ctx.parallelism if self.ctx is not None else 1
        index = self.ctx.parallel_index if self.ctx is not None else 0
        self._files = files[index::parallelism]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def get_state(self) -> tuple[int, int]:
        """(index of the file being read in this instance's list, byte offset of the next line)."""
        return self.file_index, self.offset

    def restore_state(self, state: tuple[int, int]) -> None:
        self.file_index, self.offset = state

    def _next_line(self) -> bytes | None:
        while self.file_index < len(self._files):
            if self._handle is None:
                self._handle = open(self._files[self.file_index], "rb")  # noqa: SIM115 (kept open across calls)
                self._handle.seek(self.offset)
            line = self._handle.readline()
            if line:
                self.offset += len(line)
                return line
            self._handle.close()
            self._handle = None
            self.file_index += 1
            self.offset = 0
        return None

    def _record(self, line: bytes) -> Any:
        text = line.decode("utf-8").rstrip("\r\n")
        return text if self.format == "text" else json.loads(text)

    def execute(self) -> Any:
        """The next record, or None at the end of the last file (blank jsonl lines are skipped)."""
        while (line := self._next_line()) is not None:
            if self.format == "text" or line.strip():
                return self._record(line)
        return None

    def runs(self, size: int) -> Iterator[list[Any]]:
        """Records in runs of at most `size` (the task sends each run at once; the position moves as
        each run is handed out)."""
        while True:
            run: list[Any] = []
            while len(run) < size and (line := self._next_line()) is not None:
                if self.format == "text" or line.strip():
                    run.append(self._record(line))
            if not run:
                return
            yield run


class FileSink(SinkFunction):
    """Writes records as JSON lines, one set of files per sink instance, committed with checkpoints.

    `stream.sink(FileSink, directory)`. Instance i writes
    `directory/part-{i:04d}-{n:08d}.jsonl`, where n is the checkpoint that
    committed it. Between two checkpoints, records go to a staging file in
    `directory/.staging/`; when the job's checkpoint n completes, the file of
    n is renamed into place (two-phase commit, as Flink's transactional
    sinks). After a failure, staged output no complete checkpoint holds is
    deleted and written again by the replay, so the committed files hold
    every record exactly once. Without checkpoints, each instance writes one
    file, `part-{i:04d}-00000000.jsonl`, committed when its stream ends
    (at-least-once across restarts).

    Records must be JSON-serializable (`TypeError` names the record
    otherwise). On several machines (Ray), `directory` must be one that every
    node writes to the same place.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.pending: dict[int, str] = {}
        """Staging files written and closed, by the checkpoint that will commit them."""
        self._file: IO[str] | None = None
        self._staging_path: str | None = None

    @property
    def _index(self) -> int:
        return self.ctx.parallel_index if self.ctx is not None else 0

    def _staging_dir(self) -> str:
        return os.path.join(self.directory, ".staging")

    def final_path(self, checkpoint_id: int) -> str:
        """Where the output this instance commits with checkpoint `checkpoint_id` goes."""
        return os.path.join(self.directory, f"part-{self._index:04d}-{checkpoint_id:08d}.jsonl")

    def open(self) -> None:
        os.makedirs(self._staging_dir(), exist_ok=True)
        # Staged output of an attempt that failed, held by no complete checkpoint: the replay writes it again.
        keep = set(self.pending.values())
        prefix = f"part-{self._index:04d}-"
        for name in os.listdir(self._staging_dir()):
            path = os.path.join(self._staging_dir(), name)
            if name.startswith(prefix) and path not in keep:
                os.remove(path)

    def execute(self, data: Any) -> None:
        if self._file is None:
            self._staging_path = os.path.join(self._staging_dir(), f"part-{self._index:04d}-{uuid.uuid4().hex}")
            self._file = open(self._staging_path, "w", encoding="utf-8")  # noqa: SIM115 (spans many calls)
        try:
            line = json.dumps(data)
        except TypeError as exc:
            raise TypeError(f"FileSink writes JSON lines: record {data!r} is not JSON-serializable ({exc})") from exc
        self._file.write(line + "\n")

    def _seal(self, checkpoint_id: int) -> None:
        """Close the staging file (durably) as the output of checkpoint `checkpoint_id`."""
        if self._file is None or self._staging_path is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self.pending[checkpoint_id] = self._staging_path
        self._staging_path = None

    def get_state(self) -> dict[int, str]:
        """Pre-commit: the records since the last checkpoint become the staged output of this one."""
        checkpoint_id = self.ctx.checkpoint_id if self.ctx is not None else None
        if checkpoint_id is not None:
            self._seal(checkpoint_id)
        return dict(self.pending)

    def restore_state(self, state: dict[int, str]) -> None:
        self.pending = dict(state)

    def on_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Commit: rename the staged output of every checkpoint up to `checkpoint_id` into place.

        Idempotent: a file already renamed (by an attempt that died right
        after) is already in place.
        """
        for pending_id in sorted(c for c in self.pending if c <= checkpoint_id):
            staged = self.pending.pop(pending_id)
            with contextlib.suppress(FileNotFoundError):
                os.replace(staged, self.final_path(pending_id))

    def close(self) -> None:
        checkpointing = self.ctx is not None and self.ctx.config.checkpointing
        if not checkpointing:
            self._seal(0)
            self.on_checkpoint_complete(0)
