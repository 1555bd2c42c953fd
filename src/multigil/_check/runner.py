"""Runs the checks in child processes, so that no module can take this process down.

On CPython 3.12 and 3.13 a C extension can still abort the process that
imports it into a sub-interpreter, and any module may call ``os._exit`` or
hang at import time. So every check runs in a child process
(:mod:`.worker`), several modules per child for speed, a few children at a
time. The child announces each module before it starts on it; when a child
dies, the module it was on is reported ``crashes`` (with the signal or exit
status), and the rest of its batch goes to a new child. A module that takes
longer than the timeout is reported ``timeout`` and its child is killed.

A package that imports names its submodules in its result; they join the
queue, are checked by the same children, and make up the package's verdict
(:mod:`.packages`).
"""

from __future__ import annotations

import collections
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import multigil

from . import packages
from .result import Result
from .targets import DEFAULT_SUBMODULES

__all__ = ["check_modules", "Outcome", "default_jobs", "Progress"]

# How long a fresh child may take to start (import multigil) on top of the
# timeout of its first module: a loaded CI machine can be slow.
STARTUP_GRACE = 30.0
MAX_BATCH = 16
_STDERR_TAIL = 4096

#: Told of each result as it arrives, with how many are done and how many
#: there are so far (the total grows as packages name their submodules).
Progress = Callable[[Result, int, int], None]

# The child: the directory holding multigil goes at the *end* of sys.path, so
# that the multigil the parent runs is found without putting a site-packages
# directory in front of the standard library (PYTHONPATH would).
_BOOTSTRAP = (
    "import sys; sys.path.append({root!r}); "
    "from multigil._check.worker import main; sys.exit(main())"
)


def default_jobs() -> int:
    """How many checking processes run at a time, by default."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Outcome:
    """Every module's result, in the order asked, and warnings for the user."""

    results: list[Result]
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    fd: int
    stderr: IO[bytes]
    todo: collections.deque[str]
    deadline: float
    current: str | None = None
    started: float = 0.0
    buffer: bytes = b""
    done: bool = False
    checked: list[str] = field(default_factory=list)


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"died with {signal.Signals(-returncode).name}"
        except ValueError:
            return f"died with signal {-returncode}"
    return f"exited with status {returncode}"


def _stderr_tail(stream: IO[bytes]) -> str:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - _STDERR_TAIL))
    return stream.read().decode("utf-8", "replace").strip()


def _why(tail: str) -> str:
    # What CPython says when it aborts ("Fatal Python error: ...") is the most
    # useful line; else the last line, which is often the libc message.
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Fatal Python error"):
            return line
    return lines[-1] if lines else ""


class _Runner:
    def __init__(self, names: Sequence[str], timeout: float, jobs: int, batch: int | None,
                 walk: int, progress: Progress | None) -> None:
        self.pending = collections.deque(names)
        self.known = set(names)  # every module queued so far
        self.targets = set(names) if walk > 0 else set()
        self.walk = walk
        self.parts: dict[str, list[str]] = {}  # package -> the submodules it named
        self.timeout = timeout
        self.jobs = jobs
        self.batch = batch
        self.progress = progress
        self.results: dict[str, Result] = {}
        self.warnings: list[str] = []
        self.children: dict[int, _Child] = {}
        self.selector = selectors.DefaultSelector()
        root = os.path.dirname(os.path.dirname(os.path.abspath(multigil.__file__ or "")))
        self.command = [sys.executable, "-X", "faulthandler", "-c",
                        _BOOTSTRAP.format(root=root)]

    # -- children ----------------------------------------------------------
    def _spawn(self) -> None:
        # Spread what is queued now over the jobs (packages may add more later).
        size = self.batch or min(MAX_BATCH, math.ceil(len(self.pending) / self.jobs))
        todo = collections.deque(self.pending.popleft()
                                 for _ in range(min(max(1, size), len(self.pending))))
        items = [f"+{name}" if name in self.targets else name for name in todo]
        read_fd, write_fd = os.pipe()
        stderr = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(
                [*self.command, str(write_fd), str(self.walk), *items],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # what imported modules print
                stderr=stderr,
                pass_fds=(write_fd,),
                # Its own process group: a terminal's Ctrl-C reaches only us,
                # and we can kill what a module started along with the child.
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            stderr.close()
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = _Child(proc, read_fd, stderr, todo,
                       deadline=time.monotonic() + self.timeout + STARTUP_GRACE)
        self.children[read_fd] = child
        self.selector.register(read_fd, selectors.EVENT_READ, child)

    def _kill(self, child: _Child) -> None:
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.proc.kill()

    def _finish(self, child: _Child, *, timed_out: bool = False) -> None:
        """The child is gone (or hung): settle its modules."""
        self.selector.unregister(child.fd)
        del self.children[child.fd]
        os.close(child.fd)
        if timed_out:
            self._kill(child)
        try:
            returncode = child.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # The pipe closed but the process lives on: a module closed our
            # descriptor (daemon-style start-up code closes them all).
            self._kill(child)
            returncode = child.proc.wait()
        tail = _stderr_tail(child.stderr)
        child.stderr.close()
        why = _why(tail)
        suffix = f": {why}" if why and not timed_out else ""
        if child.current is not None:
            seconds = round(time.monotonic() - child.started, 4)
            if timed_out:
                self._add(Result(child.current, "timeout",
                                 f"still importing after {self.timeout:g} s (process killed)",
                                 detail=tail or None, seconds=seconds))
            else:
                self._add(Result(child.current, "crashes",
                                 f"the process {_death(returncode)} while importing it{suffix}",
                                 detail=tail or None, seconds=seconds))
        elif not child.checked and child.todo:
            # It never got to a module: a broken set-up, not a module's fault.
            # Don't retry it for every batch: say so for this batch.
            for name in child.todo:
                self._add(Result(name, "error",
                                 f"could not check: the checking process {_death(returncode)} "
                                 f"before starting{suffix}", detail=tail or None))
            child.todo.clear()
        elif child.done or not child.todo:
            if timed_out:
                self.warnings.append(
                    f"a checking process hung after checking {', '.join(child.checked)}; "
                    "it was killed")
            elif returncode != 0:
                self.warnings.append(
                    f"a checking process {_death(returncode)} at exit, after checking "
                    f"{', '.join(child.checked)}{suffix}; one of these modules may crash "
                    "a program at exit: check them one at a time to find which")
        # What it had not started on goes to a new child, first in line.
        self.pending.extendleft(reversed(child.todo))

    def _add(self, result: Result) -> None:
        self.results[result.module] = result
        if self.progress is not None:
            self.progress(result, len(self.results), len(self.known))

    def _expand(self, package: str, parts: list[str]) -> None:
        """Queue the submodules *package* named (each once, whoever named it)."""
        self.parts[package] = parts
        new = [name for name in parts if name not in self.known]
        self.known.update(new)
        self.pending.extend(new)

    # -- events ------------------------------------------------------------
    def _event(self, child: _Child, event: dict[str, Any]) -> None:
        kind = event.pop("event", None)
        now = time.monotonic()
        if kind == "start":
            child.current = event["module"]
            child.started = now
            if child.todo and child.todo[0] == child.current:
                child.todo.popleft()
            child.deadline = now + self.timeout
        elif kind == "result":
            parts = event.pop("walk", None)
            result = Result.from_dict(event)
            if parts and result.module in self.targets:
                self._expand(result.module, [str(name) for name in parts])
            child.current = None
            child.checked.append(result.module)
            # Time to start the next one, or to exit.
            child.deadline = now + self.timeout
            self._add(result)
        elif kind == "done":
            child.done = True
            child.deadline = now + self.timeout

    def _read(self, child: _Child) -> None:
        try:
            data = os.read(child.fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._finish(child)
            return
        child.buffer += data
        *lines, child.buffer = child.buffer.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours: a module wrote to this descriptor
            if isinstance(event, dict):
                self._event(child, event)

    def run(self) -> None:
        try:
            while self.pending or self.children:
                while self.pending and len(self.children) < self.jobs:
                    self._spawn()
                now = time.monotonic()
                first = min(self.children.values(), key=lambda c: c.deadline)
                if first.deadline <= now:
                    self._finish(first, timed_out=True)
                    continue
                for key, _ in self.selector.select(first.deadline - now):
                    child = key.data
                    if child.fd in self.children:
                        self._read(child)
        finally:
            for child in list(self.children.values()):
                self._kill(child)
                child.proc.wait()
                child.stderr.close()
                os.close(child.fd)
            self.selector.close()


def check_modules(
    names: Sequence[str],
    *,
    timeout: float = 60.0,
    jobs: int | None = None,
    batch: int | None = None,
    submodules: int = DEFAULT_SUBMODULES,
    progress: Progress | None = None,
) -> Outcome:
    """Check each module in a fresh isolated interpreter, in child processes.

    Parameters
    ----------
    names : sequence of str
        Dotted module names (duplicates are checked once).
    timeout : float
        Seconds one module may take (creating its interpreter, importing,
        closing it) before its process is killed.
    jobs : int, optional
        How many checking processes run at a time (default: :func:`default_jobs`).
    batch : int, optional
        Modules per process (default: up to 16, spread over the jobs).
    submodules : int
        For each of *names* that is a package and imports, check up to this
        many of its submodules too, and give the package their verdict
        (:func:`.packages.verdict`); 0: only the modules named.
    progress : callable, optional
        Called as ``progress(result, done, total)`` as each result arrives,
        submodules' included.

    Returns
    -------
    Outcome
        The results in the order of *names*, and warnings.
    """
    unique = list(dict.fromkeys(names))
    if not unique:
        return Outcome([])
    jobs = max(1, jobs or default_jobs())
    runner = _Runner(unique, timeout, jobs, batch and max(1, batch), max(0, submodules),
                     progress)
    runner.run()
    results = [runner.results[name] for name in unique]
    for result in results:
        parts = runner.parts.get(result.module)
        if parts:
            packages.verdict(result, [runner.results[name] for name in parts])
    return Outcome(results, runner.warnings)
