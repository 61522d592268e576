"""`RunDir`: a training run's directory — its lock, config.json, the JSONL log, checkpoints/ with the
`best` and `last` links, pruning, and the clean-up that makes it agree with a resumed state.

A run directory that is not the writer (the processes of distributed training other than rank 0)
reads what it needs and writes nothing: every method that writes is a no-op there."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from nmt.errors import CheckpointError, ConfigError, TrainingError
from nmt.fileio import point, write_json, write_text
from nmt.files import read_json
from nmt.layout import BEST, CHECKPOINT_NAME, CHECKPOINTS, LAST, LOCK_FILE, LOG_FILE, checkpoint_name
from nmt.layout import CONFIG_FILE as RUN_CONFIG


def leftover(name: str) -> bool:
    """A temporary file or directory that only a killed process leaves behind (see nmt.fileio)."""
    return name.startswith(".") and re.search(r"\.(tmp|old|del)-\d+$|\.tmp$", name) is not None


class RunDir:
    def __init__(self, path: Path, writer: bool = True) -> None:
        self.path, self.writer = Path(path), writer
        self._lock_fd: int | None = None

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    # -- the lock: one writing process per run directory -----------------------------------------

    def lock(self) -> None:
        """Hold the run directory (created if needed) until `close`; a second trainer is refused."""
        if not self.writer or self._lock_fd is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise ConfigError(
                f"{self.path}: another `nmt train` is using this run directory; wait for it or choose another --out"
            ) from e
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- starting and resuming ------------------------------------------------------------------

    def holds_a_run(self) -> bool:
        return self.path.is_dir() and any(p.name != LOCK_FILE and not leftover(p.name) for p in self.path.iterdir())

    def wipe(self) -> None:
        """Everything but the lock (held): --overwrite."""
        if not self.writer:
            return
        for child in self.path.iterdir():
            if child.name != LOCK_FILE:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()

    def write_config(self, config: dict[str, Any]) -> None:
        if self.writer:
            write_json(self.path / RUN_CONFIG, config)

    def read_config(self) -> dict[str, Any]:
        if not (self.path / RUN_CONFIG).is_file():
            raise ConfigError(
                f"{self.path}: not a run directory (no {RUN_CONFIG}); start a run with DATA_DIR --out {self.path}"
            )
        return read_json(self.path / RUN_CONFIG)

    def last(self) -> Path | None:
        """The checkpoint `last` points at, or None before the first one; a dangling link is an error."""
        last = self.path / LAST
        if last.is_symlink() and not last.exists():
            raise CheckpointError(
                f"{last}: points at {os.readlink(last)}, which is missing; "
                "point it at the newest complete checkpoint in checkpoints/ and resume again"
            )
        return last.resolve() if last.exists() else None

    def remove_leftovers(self) -> None:
        """Temporary files and directories of a process that was killed; we hold the lock, so nobody writes them."""
        if not self.writer:
            return
        for folder in (self.path, self.checkpoints):
            if folder.is_dir():
                for child in folder.iterdir():
                    if leftover(child.name):
                        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()

    def forget_the_future(self, step: int, best_step: int | None, saved: list[str], keep_last: int) -> list[str]:
        """After a crash checkpoints/ can hold what the resumed state (at `step`) has not seen yet: checkpoints
        past it (written but never made `last`), a `best` moved ahead of it, or unpruned old ones. Make the
        directory agree with the state, so the resumed run ends exactly as an uninterrupted one. Returns
        the checkpoints kept of `saved`."""
        if not self.writer or not self.checkpoints.is_dir():
            return saved
        best = self.checkpoint(best_step) if best_step is not None else None
        if best is not None and best.is_dir():
            point(self.path / BEST, best)
        elif (self.path / BEST).is_symlink():
            (self.path / BEST).unlink()
        for child in self.checkpoints.iterdir():  # only after `best` has moved back: it never points at a deleted one
            match = CHECKPOINT_NAME.fullmatch(child.name)
            if match and int(match.group(1)) > step:
                self.remove_checkpoint(child.name)  # it will be written again, identically
        return self.prune(saved, keep_last)

    # -- checkpoints ----------------------------------------------------------------------------

    def saved(self, path: Path, best: bool) -> None:
        """A checkpoint was written: point `best` (if it is) and then `last` at it."""
        if not self.writer:
            return
        if best:  # before `last`: a crash in between leaves `best` ahead, which resuming puts right
            point(self.path / BEST, path)
        point(self.path / LAST, path)

    def prune(self, saved: list[str], keep_last: int) -> list[str]:
        """Keep the last `keep_last` checkpoints of `saved` (oldest first) plus the best one; the kept names."""
        if not self.writer:
            return saved
        best = Path(os.readlink(self.path / BEST)).name if (self.path / BEST).is_symlink() else None
        keep = set(saved[-max(keep_last, 1) :]) | ({best} if best else set())
        for name in saved:
            if name not in keep:
                self.remove_checkpoint(name)
        return [name for name in saved if name in keep]

    def remove_checkpoint(self, name: str) -> None:
        # renamed away first: a crash mid-delete leaves a hidden leftover, never a half-deleted checkpoint
        path = self.checkpoints / name
        doomed = path.with_name(f".{name}.del-{os.getpid()}")
        try:
            path.rename(doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    # -- the log --------------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to the run's log."""
        if not self.writer:
            return
        try:
            with open(self.path / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise TrainingError(
                f"{self.path / LOG_FILE}: cannot write ({e.strerror}); free some space, then resume with --resume"
            ) from e

    def truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from: they will be written again."""
        log = self.path / LOG_FILE
        if not self.writer or not log.exists():
            return
        kept = []
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                if line.strip() and json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                pass  # a line torn by a crash
        write_text(log, "".join(f"{line}\n" for line in kept))
