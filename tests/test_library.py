"""The task library: SQLiteQuery and SQLiteScript on real SQLite files, FetchURL on a real
HTTP server on 127.0.0.1. Each is used called plainly and inside graph flows (unmapped and
with `.map`).

FetchURL's waits between attempts go to an injected `sleep` that records them, so no test
waits for a backoff; the only real waiting is a client timeout against a server that never
answers (a fraction of a second).
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from headrace import Flow, Parameter, task, unmapped
from headrace.executors import ThreadExecutor
from headrace.library.http import FetchURL, HTTPError
from headrace.library.sqlite import SQLiteQuery, SQLiteScript

# Values that break SQL built by string formatting, and must come back byte for byte.
AWKWARD = (
    "It's",
    'She said "trust no one".',
    "Robert'); DROP TABLE words; --",
    "Ålesund — naïve “quotes” and 日本語",
    "100% sure; back\\slash",
    "'",
)


def read(db, sql, params=()):
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def tables(db):
    return [name for (name,) in read(db, "SELECT name FROM sqlite_master WHERE type = 'table'")]


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "words.db")
    SQLiteScript(db=path, script="CREATE TABLE words (n INTEGER, word TEXT);")()
    return path


# -- SQLiteScript ----------------------------------------------------------------------------


def test_script_runs_every_statement_and_returns_none(tmp_path):
    path = str(tmp_path / "a.db")
    create = SQLiteScript(
        db=path,
        script="CREATE TABLE t (x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);",
    )

    assert create() is None
    assert read(path, "SELECT x FROM t ORDER BY x") == [(1,), (2,)]


def test_script_call_arguments_override_construction_defaults(tmp_path):
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    create = SQLiteScript(db=a, script="CREATE TABLE from_construction (x);")

    create(db=b)  # the construction script, on another file
    create(script="CREATE TABLE from_call (y);")  # another script, on the construction file

    assert tables(b) == ["from_construction"]
    assert sorted(tables(a)) == ["from_call"]
    assert create.db == a and "from_construction" in create.script  # defaults unchanged


def test_script_without_a_script_or_a_database_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="no script given: pass script="):
        SQLiteScript(db=str(tmp_path / "a.db"))()
    with pytest.raises(ValueError, match="no database given: pass db="):
        SQLiteScript(script="CREATE TABLE t (x);")()
    assert not (tmp_path / "a.db").exists()


def test_a_failing_script_raises_sqlites_error(db):
    with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
        SQLiteScript(db=db, script="INSERT INTO nowhere VALUES (1);")()


# -- SQLiteQuery -----------------------------------------------------------------------------


def test_query_with_one_row_of_parameters_and_a_select_returning_rows(db):
    insert = SQLiteQuery(db=db, query="INSERT INTO words (n, word) VALUES (?, ?)")

    assert insert(data=(1, "one")) == []
    assert insert(data=[2, "two"]) == []  # a row may be a list of values too

    select = SQLiteQuery(db=db, query="SELECT n, word FROM words WHERE n >= ? ORDER BY n")
    assert select(data=(1,)) == [(1, "one"), (2, "two")]
    assert select(data=(2,)) == [(2, "two")]


def test_query_with_a_list_of_rows_runs_once_per_row(db):
    insert = SQLiteQuery(db=db, query="INSERT INTO words (n, word) VALUES (?, ?)")

    assert insert(data=[(1, "one"), (2, "two"), (3, "three")]) == []

    assert read(db, "SELECT n, word FROM words ORDER BY n") == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]


def test_query_with_named_parameters_one_row_and_many(db):
    insert = SQLiteQuery(db=db, query="INSERT INTO words (n, word) VALUES (:n, :word)")

    insert(data={"word": "one", "n": 1})
    insert(data=[{"n": 2, "word": "two"}, {"n": 3, "word": "three"}])

    select = SQLiteQuery(db=db, query="SELECT word FROM words WHERE n = :n")
    assert [select(data={"n": n}) for n in (1, 2, 3)] == [[("one",)], [("two",)], [("three",)]]


def test_query_call_arguments_override_construction_defaults(db, tmp_path):
    other = str(tmp_path / "other.db")
    SQLiteScript(db=other, script="CREATE TABLE words (n INTEGER, word TEXT);")()
    count = SQLiteQuery(db=db, query="SELECT count(*) FROM words", name="count")
    insert = SQLiteQuery(db=db, query="INSERT INTO words VALUES (?, ?)", data=(0, "default"))

    insert()  # every argument from construction
    insert(data=(1, "from call"))
    insert(db=other)
    insert(db=other, query="INSERT INTO words VALUES (?, ?) ", data=(9, "all from call"))

    assert read(db, "SELECT n, word FROM words ORDER BY n") == [(0, "default"), (1, "from call")]
    assert read(other, "SELECT n, word FROM words ORDER BY n") == [
        (0, "default"),
        (9, "all from call"),
    ]
    assert count() == [(2,)]
    assert count(query="SELECT max(n) FROM words", db=other) == [(9,)]


def test_values_are_parameters_never_sql(db):
    insert = SQLiteQuery(db=db, query="INSERT INTO words (n, word) VALUES (?, ?)")

    insert(data=list(enumerate(AWKWARD)))
    for n, word in enumerate(AWKWARD):
        insert(data={"n": n + 100, "word": word}, query="INSERT INTO words VALUES (:n, :word)")

    stored = read(db, "SELECT n, word FROM words ORDER BY n")
    assert stored == [*enumerate(AWKWARD), *((n + 100, w) for n, w in enumerate(AWKWARD))]
    assert tables(db) == ["words"]  # the DROP TABLE inside a value was only ever a value
    select = SQLiteQuery(db=db, query="SELECT n FROM words WHERE word = ? ORDER BY n")
    assert select(data=("Robert'); DROP TABLE words; --",)) == [(2,), (102,)]


def test_query_without_a_query_or_a_database_says_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match="no query given: pass query="):
        SQLiteQuery(db=str(tmp_path / "a.db"))()
    with pytest.raises(ValueError, match="no database given: pass db="):
        SQLiteQuery(query="SELECT 1")()
    assert not (tmp_path / "a.db").exists()


def test_a_wrong_number_of_parameters_raises_sqlites_error(db):
    insert = SQLiteQuery(db=db, query="INSERT INTO words VALUES (?, ?)")
    with pytest.raises(sqlite3.ProgrammingError, match="Incorrect number of bindings"):
        insert(data=(1,))
    assert read(db, "SELECT count(*) FROM words") == [(0,)]


def test_an_empty_list_of_rows_inserts_nothing(db):
    insert = SQLiteQuery(db=db, query="INSERT INTO words (n, word) VALUES (?, ?)")

    assert insert(data=[]) == []
    assert read(db, "SELECT count(*) FROM words") == [(0,)]


# -- SQLite tasks in graph flows ----------------------------------------------------------------


@task
def make_rows(batches):
    """A list of batches, each a list of (n, word) rows."""
    return [[(n, f"{word}-{i}") for i in range(n)] for n, word in batches]


def test_script_then_a_mapped_insert_of_row_lists_then_a_query(tmp_path):
    path = str(tmp_path / "flow.db")
    create = SQLiteScript(name="create", script="CREATE TABLE words (n INTEGER, word TEXT);")
    insert = SQLiteQuery(name="insert", query="INSERT INTO words (n, word) VALUES (?, ?)")
    count = SQLiteQuery(name="count", query="SELECT n, count(*) FROM words GROUP BY n ORDER BY n")

    with Flow("library") as flow:
        db = Parameter("db")
        batches = Parameter("batches")
        table = create(db=db)
        rows = make_rows(batches)
        inserted = insert.map(db=unmapped(db), data=rows, upstream_tasks=[unmapped(table)])
        counted = count(db=db, upstream_tasks=[inserted])

    state = flow.run(
        parameters={"db": path, "batches": [(1, "a"), (3, "b"), (2, "c")]},
        return_tasks=[inserted],
    )

    assert state.name == "Completed", state.message
    assert [s.name for s in state[inserted].map_states] == ["Completed"] * 3
    assert state[inserted].result() == [[], [], []]
    assert state[counted].result() == [(1, 1), (2, 2), (3, 3)]
    assert read(path, "SELECT word FROM words ORDER BY word") == [
        (w,) for w in ["a-0", "b-0", "b-1", "b-2", "c-0", "c-1"]
    ]


def test_mapped_query_takes_construction_defaults_whole(db):
    """db= and query= given at construction are strings: a map must not iterate them."""
    insert = SQLiteQuery(db=db, query="INSERT INTO words (n, word) VALUES (?, ?)")
    with Flow("library") as flow:
        rows = Parameter("rows")
        inserted = insert.map(data=rows)  # each child: one row

    state = flow.run(parameters={"rows": list(enumerate(AWKWARD))})

    assert state.name == "Completed", state.message
    assert len(state[inserted].map_states) == len(AWKWARD)
    assert read(db, "SELECT n, word FROM words ORDER BY n") == list(enumerate(AWKWARD))


def test_unmapped_query_in_a_flow_gets_its_rows_from_a_task(db):
    insert = SQLiteQuery(db=db, query="INSERT INTO words (n, word) VALUES (?, ?)")
    with Flow("library") as flow:
        batches = Parameter("batches")
        rows = make_rows(batches)
        first = rows[1]  # the second batch: three rows
        inserted = insert(data=first)

    state = flow.run(parameters={"batches": [(1, "a"), (3, "b")]})

    assert state[inserted].name == "Completed", state[inserted].message
    assert read(db, "SELECT n, word FROM words ORDER BY word") == [
        (3, "b-0"),
        (3, "b-1"),
        (3, "b-2"),
    ]


def test_parallel_mapped_inserts_into_one_file_all_land(db):
    """Forty writers on eight threads: SQLite's lock makes them wait, never fail."""
    insert = SQLiteQuery(db=db, query="INSERT INTO words (n, word) VALUES (?, ?)")
    rows = [[(n, f"w{n}-{i}") for i in range(50)] for n in range(40)]
    with Flow("library") as flow:
        batches = Parameter("batches")
        inserted = insert.map(data=batches)

    state = flow.run(parameters={"batches": rows}, executor=ThreadExecutor(8))

    assert state.name == "Completed", state.message
    assert {s.name for s in state[inserted].map_states} == {"Completed"}
    assert read(db, "SELECT count(*), count(DISTINCT word) FROM words") == [(2000, 2000)]


def test_a_query_without_a_database_fails_its_task_run_with_the_reason():
    select = SQLiteQuery(name="select", query="SELECT 1")
    with Flow("library") as flow:
        selected = select()

    state = flow.run()

    assert state.name == "Failed"
    assert state[selected].name == "Failed"
    assert isinstance(state[selected].exception, ValueError)
    assert "no database given" in state[selected].message


# -- FetchURL against a real server ---------------------------------------------------------------


def answer(status, body=b"", content_type="text/plain; charset=utf-8", headers=()):
    """A step of a route's script: send this response."""

    def step(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return step


def hang_up(handler):
    """A step: close the connection without a word."""
    handler.close_connection = True


class ScriptedServer:
    """An HTTP server on 127.0.0.1 whose routes answer from a script of steps, in order (the
    last step repeats). It records every path requested. `stall` is a step that answers only
    once the test ends, so a client's timeout is what ends the request."""

    def __init__(self):
        self.routes: dict[str, list] = {}
        self.seen: list[str] = []
        self.release = threading.Event()
        lock = threading.Lock()
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    scripted.seen.append(self.path)
                    steps = scripted.routes.get(self.path, [answer(404, b"no such page")])
                    step = steps.pop(0) if len(steps) > 1 else steps[0]
                step(self)

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def stall(self, handler):
        self.release.wait(10)  # backstop: never hold a test run for long
        answer(200, b"too late")(handler)

    def url(self, path):
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"


@pytest.fixture
def server():
    scripted = ScriptedServer()
    scripted.thread.start()
    yield scripted
    scripted.release.set()
    scripted.httpd.shutdown()
    scripted.httpd.server_close()


def test_fetch_returns_the_body_decoded_by_the_declared_charset(server):
    text = "Scully’s café — naïve"
    server.routes["/cp1252"] = [answer(200, text.encode("cp1252"), "text/html; charset=cp1252")]
    server.routes["/latin1"] = [
        answer(200, "café".encode("latin-1"), "text/plain; charset=latin-1")
    ]
    server.routes["/utf8"] = [answer(200, text.encode("utf-8"), "text/html; charset=utf-8")]
    server.routes["/none"] = [answer(200, text.encode("utf-8"), "text/html")]
    fetch = FetchURL(sleep=pytest.fail)  # a success never waits

    assert fetch(server.url("/cp1252")) == text
    assert fetch(server.url("/latin1")) == "café"
    assert fetch(server.url("/utf8")) == text
    assert fetch(server.url("/none")) == text  # no charset: UTF-8
    assert server.seen == ["/cp1252", "/latin1", "/utf8", "/none"]


def test_a_redirect_is_followed(server):
    server.routes["/old"] = [answer(301, b"", headers=[("Location", "/new")])]
    server.routes["/new"] = [answer(200, b"moved here")]

    assert FetchURL(sleep=pytest.fail)(server.url("/old")) == "moved here"
    assert server.seen == ["/old", "/new"]


def test_server_errors_are_retried_with_doubling_backoff(server):
    server.routes["/flaky"] = [answer(500), answer(503), answer(200, b"third time lucky")]
    sleeps = []
    fetch = FetchURL(attempts=3, backoff=0.25, sleep=sleeps.append)

    assert fetch(server.url("/flaky")) == "third time lucky"
    assert server.seen == ["/flaky"] * 3
    assert sleeps == [0.25, 0.5]


def test_server_errors_on_every_attempt_fail_with_the_last_status(server):
    server.routes["/down"] = [answer(500), answer(502)]
    sleeps = []
    fetch = FetchURL(attempts=4, backoff=1.0, sleep=sleeps.append)

    with pytest.raises(HTTPError) as raised:
        fetch(server.url("/down"))

    assert raised.value.status == 502
    assert raised.value.url == server.url("/down")
    assert server.url("/down") in str(raised.value) and "502" in str(raised.value)
    assert server.seen == ["/down"] * 4
    assert sleeps == [1.0, 2.0, 4.0]  # no wait after the last attempt


def test_a_client_error_fails_at_once_with_url_and_status(server):
    sleeps = []
    fetch = FetchURL(attempts=5, sleep=sleeps.append)

    with pytest.raises(HTTPError) as raised:
        fetch(server.url("/missing.htm"))

    message = str(raised.value)
    assert server.url("/missing.htm") in message
    assert "404" in message
    assert raised.value.status == 404
    assert server.seen == ["/missing.htm"]  # one request: trying again cannot help
    assert sleeps == []


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_connection_is_retried_then_raises_connection_error():
    url = f"http://127.0.0.1:{closed_port()}/page.htm"
    sleeps = []
    fetch = FetchURL(attempts=3, backoff=0.5, sleep=sleeps.append)

    with pytest.raises(ConnectionError) as raised:
        fetch(url)

    assert url in str(raised.value)
    assert "refused" in str(raised.value).lower()
    assert sleeps == [0.5, 1.0]


def test_a_server_that_hangs_up_is_retried(server):
    server.routes["/rude"] = [hang_up, answer(200, b"sorry about that")]
    sleeps = []

    assert FetchURL(attempts=2, backoff=0.1, sleep=sleeps.append)(server.url("/rude")) == (
        "sorry about that"
    )
    assert server.seen == ["/rude", "/rude"]
    assert sleeps == [0.1]


def test_a_slow_server_times_out_each_attempt_then_raises_connection_error(server):
    server.routes["/slow"] = [server.stall]
    sleeps = []
    fetch = FetchURL(timeout_seconds=0.2, attempts=2, backoff=0.1, sleep=sleeps.append)

    with pytest.raises(ConnectionError) as raised:
        fetch(server.url("/slow"))

    assert server.url("/slow") in str(raised.value)
    assert "timed out" in str(raised.value)
    assert server.seen == ["/slow", "/slow"]
    assert sleeps == [0.1]


def test_a_slow_first_answer_then_a_fast_one_succeeds(server):
    server.routes["/slow-once"] = [server.stall, answer(200, b"here now")]
    sleeps = []
    fetch = FetchURL(timeout_seconds=0.2, attempts=2, backoff=0.1, sleep=sleeps.append)

    assert fetch(server.url("/slow-once")) == "here now"
    assert sleeps == [0.1]


def body_then_hang_up(handler):
    """Promise 100 bytes, send 10, close."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    handler.wfile.write(b"0123456789")
    handler.close_connection = True


def test_a_connection_dropped_mid_body_is_retried(server):
    server.routes["/cut"] = [body_then_hang_up, answer(200, b"whole")]
    sleeps = []

    assert FetchURL(attempts=2, backoff=0.1, sleep=sleeps.append)(server.url("/cut")) == "whole"
    assert sleeps == [0.1]


def test_attempts_must_be_at_least_one():
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        FetchURL(attempts=0)


# -- FetchURL in graph flows ----------------------------------------------------------------------


def test_fetch_mapped_in_a_throttled_flow_fails_only_the_missing_page(server):
    for name in "abcde":
        server.routes[f"/{name}.htm"] = [answer(200, f"page {name}".encode())]
    fetch = FetchURL(name="fetch", tags=["web"], attempts=2, sleep=pytest.fail)
    urls = [server.url(f"/{name}.htm") for name in "ab"] + [server.url("/gone.htm")]
    urls += [server.url(f"/{name}.htm") for name in "cde"]

    with Flow("pages") as flow:
        pages = fetch.map(Parameter("urls"))

    state = flow.run(parameters={"urls": urls}, executor=ThreadExecutor(4), throttle={"web": 2})

    assert pages.tags == frozenset({"web"})
    children = state[pages].map_states
    assert [s.name for s in children] == ["Completed"] * 2 + ["Failed"] + ["Completed"] * 3
    assert [s.result() for i, s in enumerate(children) if i != 2] == [
        f"page {name}" for name in "abcde"
    ]
    assert isinstance(children[2].exception, HTTPError)
    assert server.url("/gone.htm") in children[2].message and "404" in children[2].message
    assert sorted(server.seen) == sorted(f"/{n}.htm" for n in ["a", "b", "gone", "c", "d", "e"])
    assert state.name == "Failed"


def test_fetch_unmapped_in_a_flow_feeds_a_downstream_task(server):
    server.routes["/index.htm"] = [
        answer(200, "Señor Ibáñez".encode("latin-1"), "text/html; charset=latin-1")
    ]
    retries = []
    fetch = FetchURL(name="fetch", timeout_seconds=5, sleep=retries.append)

    @task
    def shout(text):
        return text.upper()

    with Flow("page") as flow:
        url = Parameter("url")
        loud = shout(fetch(url))

    state = flow.run(parameters={"url": server.url("/index.htm")})

    assert state[loud].result() == "SEÑOR IBÁÑEZ"
    assert retries == []
