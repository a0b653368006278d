"""The history's writer process: SQLite's work for a busy run, on a core of its own.

A recorder's writer thread writes its batches itself while runs are small.
Writing a row needs the interpreter lock (binding its values) and gives it
up in SQLite (stepping), and a thread that gives the lock up waits for it
again while the flow's thread is busy: one row at a time, and the two
threads take turns instead of running side by side. So once a SQLite
recorder has written `sql.HANDOFF_ROWS` rows in a process, its writer thread
starts this module as a child process and hands it every batch from then
on. The child owns its own connection and writes with the recorder's own
code (`SQLRecorder._write_batch`); the parent's thread only pickles.
HEADRACE_HISTORY_WRITER=thread never starts it; =process starts it at the
first batch. PostgreSQL does its work in its own server already, and always
writes from the thread.

The protocol, over the child's stdin and stdout, is length-prefixed pickles.
The child is given the database on its command line, connects and says
"ready"; until then the thread goes on writing. Then it is sent
`(open_runs, incomplete, skipped)`, the writer thread's bookkeeping
(`SQLRecorder`), and `(seq, rows)` per batch. The child answers
each batch once it is committed, with `(seq, disabled, incomplete, warnings)`:
why history turned off (or None), the runs that lost rows, and the warnings
it logged, which the parent logs as its own. At most IN_FLIGHT batches are
unanswered, and a flush waits for all of them.

Faults: the child ignores Ctrl-C (the run handles it, and flushes through
the child) and ends when its stdin does, so a parent that dies, even by
SIGKILL, leaves no process behind; what the parent sent is written first.
A child that dies is warned of once; the parent's thread writes again the
batches not answered, and writes itself from then on. A batch committed
just before the child died, and not answered, has its state and log rows
written twice; its task runs and flow runs are not (they are keyed). A
process forked from the parent (a process executor's worker) gets the
pipes replaced by /dev/null, so it never holds the child's stdin open.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import weakref

START_SECONDS = 30.0  # how long HEADRACE_HISTORY_WRITER=process waits for it to start
IN_FLIGHT = 2  # batches sent and not yet answered, past which the thread waits
_HEADER = struct.Struct("!Q")

log = logging.getLogger("headrace.store")


def _send(fd: int, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int):
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return pickle.loads(_read_exactly(fd, size))


def _read_exactly(fd: int, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            raise EOFError("the other end of the history's writer pipe closed")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class WriterProcess:
    """The child, seen from the recorder's writer thread (the only thread that calls it)."""

    def __init__(self, recorder):
        self.recorder = recorder
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "headrace.store.writer_process", recorder.where],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._to, self._from = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self._unanswered: collections.deque = collections.deque()  # (seq, rows)
        self._seq = 0
        self.writing = False  # it said it is ready and has the thread's bookkeeping
        self.ended = False
        _LIVE.add(self)

    def ready(self, wait: bool = False) -> bool:
        """Whether it writes the batches from now on. Until it has started (tens of
        milliseconds) the thread goes on writing, so a run never waits for it to start;
        with `wait` (HEADRACE_HISTORY_WRITER=process) the thread waits for it."""
        if self.writing or self.ended:
            return self.writing
        try:
            if not select.select([self._from], [], [], START_SECONDS if wait else 0)[0]:
                if wait:
                    raise OSError(f"it did not start within {START_SECONDS:g} s")
                return False
            _receive(self._from)  # "ready"
            recorder = self.recorder
            _send(self._to, (recorder._open, recorder._incomplete, recorder._skipped))
        except (OSError, EOFError, pickle.UnpicklingError):
            self._ended()
            return False
        self.writing = True
        return True

    def write(self, rows: dict[str, list], wait: bool) -> list | None:
        """Hand over one batch (none when `rows` is empty); with `wait`, return once every
        batch handed over is written. None, or (the child ended) the batches not known to
        be written."""
        try:
            if rows:
                self._seq += 1
                self._unanswered.append((self._seq, rows))
                _send(self._to, (self._seq, rows))
            while len(self._unanswered) > (0 if wait else IN_FLIGHT):
                self._answer(*_receive(self._from))
        except (OSError, EOFError, pickle.UnpicklingError):
            return self._ended()
        return None

    def _answer(self, seq: int, disabled, incomplete: dict, warnings: list) -> None:
        while self._unanswered and self._unanswered[0][0] <= seq:
            self._unanswered.popleft()
        for level, text in warnings:
            log.log(level, "%s", text)
        self.recorder._incomplete = incomplete
        self.recorder._disabled = disabled  # after its warning, as `_disable` does

    def _ended(self) -> list:
        self.ended, self.writing = True, False
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # alive but not answering: it is not used again
            self.proc.kill()
            code = self.proc.wait()
        _LIVE.discard(self)
        log.warning(
            "Run history: the writer process (pid %d) ended (exit code %s); this process "
            "writes the history from now on, starting with the %d batches not known to be "
            "written.", self.proc.pid, code, len(self._unanswered),
        )  # fmt: skip
        return [rows for _, rows in self._unanswered]


_LIVE: weakref.WeakSet = weakref.WeakSet()


def _forked() -> None:
    """In a forked child: the pipes point at /dev/null, so only the parent holds them."""
    if not _LIVE:
        return
    null = os.open(os.devnull, os.O_RDWR)
    for writer in list(_LIVE):
        os.dup2(null, writer._to)
        os.dup2(null, writer._from)
    os.close(null)
    _LIVE.clear()


os.register_at_fork(after_in_child=_forked)


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.taken: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.taken.append((record.levelno, record.getMessage()))


def main() -> None:
    """The child: write each batch as it arrives, answer once it is committed."""
    from headrace.store.sqlite import sqlite_recorder

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's: it flushes through us
    into, back = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout = sys.stderr  # nothing but answers goes into the answer pipe
    warnings = _Warnings()
    store_log = logging.getLogger("headrace.store")
    store_log.addHandler(warnings)
    store_log.propagate = False
    recorder = sqlite_recorder(sys.argv[1])
    conn, statements = recorder._writer_connection()
    try:
        _send(back, "ready")
        recorder._open, recorder._incomplete, recorder._skipped = _receive(into)
        while True:
            seq, rows = _receive(into)
            if conn is not None:
                conn = recorder._write_batch(conn, statements, rows)
            _send(back, (seq, recorder._disabled, recorder._incomplete, warnings.taken))
            warnings.taken = []
    except (EOFError, BrokenPipeError):  # the parent is done, or gone: all it sent is written
        pass
    finally:
        if conn is not None:
            conn.close()


if __name__ == "__main__":
    main()
