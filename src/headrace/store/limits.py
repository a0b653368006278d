"""Tag limits shared by every process on one store, and the claims on their slots.

`tag_limits` holds each limit (`headrace limits set web 3`). `limit_claims`
holds one row per (ticket, tag) of every request for slots: a ticket is one
task run asking for all its limited tags at once, `waiting` until it is
granted, then holding until its rows are deleted. Tickets are numbered in
the order they were asked for, across processes.

The rule, applied in `exchange` and mirrored read-only by `grantable`: a
waiting ticket is granted when, for each of its tags that has a limit,
fewer than `slots` tickets hold the tag or wait for it ahead of it. A
ticket that does not fit keeps its place, so no later ticket takes a slot
it waits for (first come, first served per tag), and it holds nothing while
it waits (all or nothing: no ticket holds a slot and waits for another). A
tag whose limit was removed limits nothing.

Every row names its process by a token its process keeps alive
(`Liveness`): on SQLite an flock on a file of its own beside the database,
on PostgreSQL a session advisory lock. Both die with the process, so
`sweep` tells a dead process's rows from a live one's at once, and deletes
them. Writes are serialised across processes: SQLite's BEGIN IMMEDIATE,
PostgreSQL's transaction advisory lock.

This module must not know what a task or a flow is: requests arrive as tags
and the text to show.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from headrace._pid import HOST
from headrace.store.sql import Dialect, OneConnection, placeholders

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

LOCK_CLASS = 0x68726C6D  # "hrlm": the first key of every advisory lock of this module
# A PostgreSQL server that restarted dropped every session's lock: until it has been up
# this long (and this long after a process lost its own connection), that process takes
# nobody for dead, so that the live ones can reconnect and lock again.
RESTART_GRACE_SECONDS = 5.0
changes = 0  # limits set or removed by this process: its next run reads them again at once
CLAIM_COLUMNS = ["ticket", "tag", "tags", "waiting", "process", "host", "pid", "flow_run_id",
                 "task_run_id", "task_run_name", "requested", "granted"]  # fmt: skip


@dataclass(slots=True)
class Claim:
    """One ticket's claim on one tag: waiting, or holding a slot since `granted`."""

    ticket: int
    tag: str
    tags: list[str]
    waiting: bool
    process: str
    host: str | None
    pid: int | None
    flow_run_id: str | None
    task_run_id: str | None
    task_run_name: str | None
    requested: float
    granted: float | None


@dataclass(slots=True)
class TagLimit:
    tag: str
    slots: int
    created: float
    holders: list[Claim]
    waiting: int

    def as_json(self) -> dict:
        """What `headrace limits ls --json` and /api/limits show."""
        return {
            "tag": self.tag,
            "slots": self.slots,
            "waiting": self.waiting,
            "holders": [
                {"task_run_id": c.task_run_id, "task_run_name": c.task_run_name,
                 "flow_run_id": c.flow_run_id, "host": c.host, "pid": c.pid,
                 "since": c.granted}
                for c in self.holders
            ],
        }  # fmt: skip


@dataclass(slots=True)
class Asked:
    """A request for slots, as the store keeps it: the tags, and what to show of it."""

    tags: list[str]
    flow_run_id: str | None = None
    task_run_id: str | None = None
    task_run_name: str | None = None


def check_slots(tag: Any, slots: Any) -> None:
    if not isinstance(tag, str) or not tag.strip():
        raise ValueError(f"a tag limit needs a tag: got {tag!r}")
    if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
        raise ValueError(
            f"the limit of tag {tag!r} must be a whole number >= 1, got {slots!r}; "
            "`headrace limits rm` removes a limit."
        )


def read_limits(rows: Callable[[str, tuple], list]) -> list[TagLimit]:
    """Every limit with its holders (oldest first) and how many wait, through
    `rows(sql, params)` (a Reader's or ours)."""
    limits = {
        tag: TagLimit(tag, slots, created, [], 0)
        for tag, slots, created in rows(
            "SELECT tag, slots, created FROM tag_limits ORDER BY tag", ()
        )
    }
    for row in rows(f"SELECT {', '.join(CLAIM_COLUMNS)} FROM limit_claims WHERE waiting = 0 "
                    "ORDER BY ticket", ()):  # fmt: skip
        claim = _claim(row)
        if claim.tag in limits:
            limits[claim.tag].holders.append(claim)
    for tag, waiting in rows(
        "SELECT tag, count(*) FROM limit_claims WHERE waiting = 1 GROUP BY tag", ()
    ):
        if tag in limits:
            limits[tag].waiting = waiting
    return list(limits.values())


def _claim(row: tuple) -> Claim:
    values = dict(zip(CLAIM_COLUMNS, row))
    values["tags"] = json.loads(values["tags"])
    values["waiting"] = bool(values["waiting"])
    return Claim(**values)


class LimitStore(OneConnection):
    """Tag limits and their claims in one database, for one process (its `liveness`
    names it in its rows); safe to share between threads."""

    def __init__(self, dialect: Dialect, connect: Callable[[], Any], where: str,
                 liveness: Liveness, clock: Callable[[], float] | None = None):  # fmt: skip
        super().__init__(dialect, connect, where)
        self.liveness = liveness
        self.clock = clock or time.time

    # -- the limits ---------------------------------------------------------------------------
    def set(self, tag: str, slots: int) -> None:
        global changes
        check_slots(tag, slots)
        changes += 1
        self._execute(
            "INSERT INTO tag_limits (tag, slots, created) VALUES (?, ?, ?) "
            "ON CONFLICT (tag) DO UPDATE SET slots = excluded.slots",
            (tag, slots, self.clock()),
            fetch=False,
            commit=True,
        )

    def remove(self, tag: str) -> bool:
        """Remove the limit of `tag` (its waiters are granted at once); False if none."""
        global changes
        changes += 1
        gone = self._execute("DELETE FROM tag_limits WHERE tag = ?", (tag,), fetch=False,
                             commit=True)  # fmt: skip
        return gone > 0

    def limits(self) -> dict[str, int]:
        return dict(self._execute("SELECT tag, slots FROM tag_limits"))

    def read(self) -> list[TagLimit]:
        """Every limit, its live holders and its waiters (the dead are swept first)."""
        self.sweep()
        return read_limits(self._execute)

    # -- claims ---------------------------------------------------------------------------
    def exchange(self, asked: list[Asked], done: Iterable[int],
                 waiting: Waiting) -> tuple[list[int], list[int]]:  # fmt: skip
        """In one transaction: delete the rows of the `done` tickets, enter `asked` as new
        waiting tickets, and grant what fits of ours that wait (`waiting`, and the new
        ones). Returns the tickets of `asked`, in order, and those granted; `waiting` then
        holds the new tickets and not the granted ones (and is as it was on an error)."""
        token = self.liveness.token()
        now = self.clock()
        tickets: list[int] = []
        try:
            with self._serialized() as run:
                done = list(done)
                if done:
                    run.many("DELETE FROM limit_claims WHERE ticket = ?", [(t,) for t in done])
                if asked:
                    first = run.one("SELECT coalesce(max(ticket), 0) FROM limit_claims")[0] + 1
                    rows = []
                    for ticket, request in enumerate(asked, first):
                        tickets.append(ticket)
                        waiting.add(ticket, request.tags)
                        tags = json.dumps(request.tags)
                        rows += [(ticket, tag, tags, 1, token, HOST, os.getpid(),
                                  request.flow_run_id, request.task_run_id,
                                  request.task_run_name, now, None)
                                 for tag in request.tags]  # fmt: skip
                    run.many(
                        f"INSERT INTO limit_claims ({', '.join(CLAIM_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(CLAIM_COLUMNS))})",
                        rows,
                    )
                granted = _fitting(run, waiting)
                if granted:
                    run.many(
                        "UPDATE limit_claims SET waiting = 0, granted = ? WHERE ticket = ?",
                        [(now, t) for t in granted],
                    )
        except BaseException:
            for ticket in tickets:
                waiting.remove(ticket)
            raise
        for ticket in granted:
            waiting.remove(ticket)
        return tickets, granted

    def grantable(self, waiting: Waiting) -> bool:
        """Whether any of the `waiting` tickets would be granted now: a read, without the
        write lock, to ask often."""
        with self._reading() as run:
            return bool(_fitting(run, waiting))

    def ours(self) -> dict[int, bool]:
        """This process's tickets in the store, each with whether it still waits."""
        if not self.liveness.held():
            return {}
        rows = self._execute(
            "SELECT ticket, min(waiting) FROM limit_claims WHERE process = ? GROUP BY ticket",
            (self.liveness.token(),),
        )
        return {ticket: bool(waiting) for ticket, waiting in rows}

    def sweep(self) -> int:
        """Delete the claims of processes that are gone; how many rows went."""
        processes = [p for (p,) in self._execute("SELECT DISTINCT process FROM limit_claims")]
        dead = self.liveness.dead(processes)
        if not dead:
            return 0
        with self._serialized() as run:
            gone = run.many("DELETE FROM limit_claims WHERE process = ?", [(p,) for p in dead])
        self.liveness.forget(dead)
        return gone

    def forget_me(self) -> None:
        """Delete every claim of this process (it is leaving)."""
        if self.liveness.held():
            token = self.liveness.token()
            with self._serialized() as run:
                run.many("DELETE FROM limit_claims WHERE process = ?", [(token,)])

    def close(self) -> None:
        super().close()
        self.liveness.close()

    # -- transactions ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _serialized(self):
        """A write transaction that no other process's limit transaction overlaps."""
        with self._using() as conn:
            run = _Run(conn, self.dialect)
            if self.dialect.name == "sqlite":
                run.execute("BEGIN IMMEDIATE")
            else:
                run.execute("SELECT pg_advisory_xact_lock(?, 0)", (LOCK_CLASS,))
            yield run
            conn.commit()

    @contextlib.contextmanager
    def _reading(self):
        with self._using() as conn:
            yield _Run(conn, self.dialect)
            if self.dialect.name != "sqlite":
                conn.commit()  # end the read's transaction


class Waiting:
    """A process's waiting tickets, by ticket and by tag, kept as they change: the rule
    then reads the front of each queue, never every ticket that waits."""

    __slots__ = ("tags_of", "by_tag")

    def __init__(self):
        self.tags_of: dict[int, list[str]] = {}
        self.by_tag: dict[str, set[int]] = {}

    def add(self, ticket: int, tags: list[str]) -> None:
        self.tags_of[ticket] = tags
        for tag in tags:
            self.by_tag.setdefault(tag, set()).add(ticket)

    def remove(self, ticket: int) -> None:
        for tag in self.tags_of.pop(ticket, ()):
            tickets = self.by_tag[tag]
            tickets.discard(ticket)
            if not tickets:
                del self.by_tag[tag]

    def __bool__(self) -> bool:
        return bool(self.tags_of)


def _fitting(run: _Run, waiting: Waiting) -> list[int]:
    """Of the `waiting` tickets, those that fit now (the module's rule)."""
    if not waiting:
        return []
    free_of = {tag: slots - held for tag, slots, held in run.all(
        "SELECT tag, slots, (SELECT count(*) FROM limit_claims h "
        "WHERE h.tag = l.tag AND h.waiting = 0) FROM tag_limits l"
    )}  # fmt: skip
    front: dict[str, set[int]] = {}  # tag -> the tickets that have a free place
    candidates: set[int] = set()
    for tag, mine in waiting.by_tag.items():
        if tag not in free_of:  # not limited (any more): no place to wait for
            candidates |= mine
            continue
        free = free_of[tag]
        ahead = run.all(
            "SELECT ticket FROM limit_claims WHERE tag = ? AND waiting = 1 "
            f"ORDER BY ticket LIMIT {int(free)}",
            (tag,),
        ) if free > 0 else ()  # fmt: skip
        front[tag] = {ticket for (ticket,) in ahead}
        candidates.update(t for t in front[tag] if t in mine)
    tags_of = waiting.tags_of
    return sorted(
        ticket for ticket in candidates
        if all(ticket in front[t] for t in tags_of[ticket] if t in free_of)
    )  # fmt: skip


class _Run:
    """Statements on one connection, in whatever transaction it is in."""

    __slots__ = ("cur", "dialect")

    def __init__(self, conn, dialect: Dialect):
        self.cur = conn.cursor()
        self.dialect = dialect

    def execute(self, sql: str, params: tuple = ()):
        self.cur.execute(placeholders(self.dialect, sql), params)
        return self.cur

    def all(self, sql: str, params: tuple = ()) -> list:
        return self.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple = ()):
        return self.execute(sql, params).fetchone()

    def many(self, sql: str, rows: list) -> int:
        self.cur.executemany(placeholders(self.dialect, sql), rows)
        return self.cur.rowcount


# -- liveness ------------------------------------------------------------------------------------


class Liveness:
    """Names this process in its claims by a token kept alive exactly as long as the
    process is, and tells which tokens of other processes are dead."""

    def token(self) -> str:
        raise NotImplementedError

    def held(self) -> bool:
        raise NotImplementedError

    def dead(self, tokens: list[str]) -> list[str]:
        raise NotImplementedError

    def forget(self, tokens: list[str]) -> None:
        """The rows of these dead tokens are gone: what was kept for them can go too."""

    def close(self) -> None:
        pass


class FileLiveness(Liveness):
    """Tokens as files in `folder`, each flock'ed by its process for as long as it lives.

    A process forked from ours inherits the open file but closes its copy: the lock
    stays ours alone and dies with us."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._token: str | None = None
        self._fd: int | None = None

    def token(self) -> str:
        if self._token is None:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            token = f"{HOST}-{os.getpid()}-{os.urandom(4).hex()}"
            fd = os.open(self.folder / token, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # before any row names it: never seen unlocked
            self._fd, self._token = fd, token
            _close_in_children(self)
        return self._token

    def held(self) -> bool:
        return self._token is not None

    def dead(self, tokens: list[str]) -> list[str]:
        dead = []
        for token in tokens:
            if token == self._token:
                continue
            try:
                fd = os.open(self.folder / token, os.O_RDWR)
            except FileNotFoundError:  # its process left, removing it
                dead.append(token)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: its process lives
            finally:
                os.close(fd)
            dead.append(token)
        return dead

    def forget(self, tokens: list[str]) -> None:
        for token in tokens:
            with contextlib.suppress(OSError):
                os.unlink(self.folder / token)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.folder / self._token)
            os.close(self._fd)
            self._fd = self._token = None

    def _in_child(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self._token = None


class AdvisoryLiveness(Liveness):
    """Tokens as PostgreSQL session advisory locks (LOCK_CLASS, n), held on the limit
    store's own connection: the server frees one the moment that connection goes. A
    restart frees every lock at once, so for RESTART_GRACE_SECONDS after the server
    started, or after this process lost its connection, nobody is taken for dead: the
    live ones reconnect and lock again meanwhile.

    The store connects through `connect`, which takes this process's lock again on a
    new connection (after a lost one), and asks through the store's `rows(sql, params)`."""

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self._key: int | None = None
        self._relocked = float("-inf")  # when a new connection took our lock again
        self.rows: Callable[..., list] | None = None  # set by the store

    def connect(self):
        conn = self._connect()
        if self._key is not None:
            self._relocked = time.monotonic()
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_CLASS, self._key))
            conn.commit()  # a session lock outlives the transaction that took it
        return conn

    def token(self) -> str:
        while self._key is None:
            key = int.from_bytes(os.urandom(4)) % (2**31 - 1) + 1
            if self.rows("SELECT pg_try_advisory_lock(?, ?)", (LOCK_CLASS, key))[0][0]:
                self._key = key
        return str(self._key)

    def held(self) -> bool:
        return self._key is not None

    def dead(self, tokens: list[str]) -> list[str]:
        if not tokens:
            return []
        if time.monotonic() - self._relocked < RESTART_GRACE_SECONDS:
            return []
        [(up,)] = self.rows("SELECT extract(epoch FROM now() - pg_postmaster_start_time())")
        if float(up) < RESTART_GRACE_SECONDS:
            return []
        live = {str(objid) for (objid,) in self.rows(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = ? "
            "AND objsubid = 2 AND granted",
            (LOCK_CLASS,),
        )}  # fmt: skip
        return [t for t in tokens if t not in live]


_forkable: list[FileLiveness] = []


def _close_in_children(liveness: FileLiveness) -> None:
    if not _forkable and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: [f._in_child() for f in _forkable])
    _forkable.append(liveness)


__all__ = ["LimitStore", "FileLiveness", "AdvisoryLiveness", "TagLimit", "Claim", "Asked",
           "Waiting", "read_limits", "check_slots"]  # fmt: skip
