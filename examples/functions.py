"""Seed 004, the Prefect 2 intro notebook, as a headrace script.

    python examples/functions.py

The notebook calls time.jsontest.com and catfact.ninja; this script starts a
small JSON server on 127.0.0.1 that answers `/time` and `/fact` the same
way, so it runs offline. Then it runs the notebook's cells in order. What
a cell shows is printed to stdout under the cell's number (`In [6]`); the
run logs go to stderr, as they do in the notebook.

Where headrace differs from Prefect 2.1 the cell says so: calling a flow
returns its value (`return_state=True` returns the State), a failing flow
raises to its caller, and a flow that returns None returns None.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from headrace import cli, flow, task

FACT = (
    "The first cartoon cat was Felix the Cat in 1919. In 1940, Tom and Jerry starred in "
    'the first theatrical cartoon "Puss Gets the Boot." In 1981 Andrew Lloyd Weber created '
    "the musical Cats, based on T.S. Eliot's Old Possum's Book of Practical Cats."
)


# -- the stand-in for the notebook's web APIs ------------------------------------------------


class JSONAPI(BaseHTTPRequestHandler):
    """`/time` like time.jsontest.com, `/fact` like catfact.ninja/fact; 404 otherwise."""

    def do_GET(self):
        if self.path.rstrip("/") == "/time":
            now = datetime.datetime.now(datetime.UTC)
            body = {
                "date": now.strftime("%m-%d-%Y"),
                "milliseconds_since_epoch": int(now.timestamp() * 1000),
                "time": now.strftime("%I:%M:%S %p"),
            }
        elif self.path.rstrip("/") == "/fact":
            body = {"fact": FACT, "length": len(FACT)}
        else:
            self.send_error(404, f"no such endpoint: {self.path}")
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # the notebook shows no access log


def start_server() -> tuple[ThreadingHTTPServer, str]:
    """Serve JSONAPI on a free port of 127.0.0.1; return the server and its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), JSONAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


# Direct connections only: a proxy from the environment must not see 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Response:
    """The two things the notebook reads from a `requests` response."""

    def __init__(self, status_code: int, body: bytes):
        self.status_code = status_code
        self._body = body

    def json(self):
        return json.loads(self._body)


def http_get(url: str) -> Response:
    """`requests.get(url)` with the standard library (raises ValueError for 'foo')."""
    with _opener.open(url, timeout=10) as response:
        return Response(response.status, response.read())


def cell(number) -> None:
    print(f"\nIn [{number}]:", flush=True)


# -- the notebook ------------------------------------------------------------------------------


def main() -> None:
    server, base = start_server()
    time_url, fact_url = f"{base}/time", f"{base}/fact"
    try:
        run_notebook(time_url, fact_url)
    finally:
        server.shutdown()
        server.server_close()


def run_notebook(time_url: str, fact_url: str) -> None:
    cell(2)  # !prefect version: the same table, from `headrace version`
    cli.main(["version"], standalone_mode=False)

    # In [3]
    @task
    def add_one(x):
        return x + 1

    @flow
    def my_flow():
        result = add_one(1)  # returns an int
        assert result == 2

    # In [4]
    @flow
    def my_add_one_flow():
        state = add_one(1, return_state=True)  # returns a State
        return state

    cell(5)  # state = my_add_one_flow()
    # In Prefect 2.1 a flow call returned a State; in headrace it returns the value, and
    # return_state=True the State. A flow that returns a State adopts it as its own.
    state = my_add_one_flow(return_state=True)
    print(repr(state))
    cell(6)
    print(state.result())

    # In [7]
    @flow
    def my_favorite_function():
        print("This function doesn't do much")
        return 42

    @flow
    def my_favorite_function_flow():
        return my_favorite_function(return_state=True)

    cell(8)  # state = my_favorite_function_flow()
    state = my_favorite_function_flow(return_state=True)  # adopts the subflow's State
    cell(9)
    print(repr(state))
    cell(10)
    print(state.result())

    # In [11], [12]
    @task
    def call_api(url):
        return http_get(url).json()

    @flow
    def api_flow(url):
        return call_api(url, return_state=True)

    cell(13)  # state = api_flow("http://time.jsontest.com/")
    state = api_flow(time_url, return_state=True)
    cell(14)
    print(state.result())
    cell(15)
    print(repr(state))

    cell(16)  # state_bad = api_flow("foo")
    try:
        api_flow("foo")
    except ValueError as exc:
        print(f"api_flow('foo') raised {type(exc).__name__}: {exc}")
    state_bad = api_flow("foo", return_state=True)
    cell(19)  # state_bad
    print(repr(state_bad))
    print(f"state_bad.exception: {state_bad.exception!r}")

    # In [20]
    @task(name="cat-url")
    def call_api(url):  # noqa: F811 - the notebook redefines it, cell by cell
        response = http_get(url)
        print(f"Response: {response.status_code}")
        return response.json()

    @flow(name="cat")
    def api_flow(url):  # noqa: F811
        fact_json = call_api(url)
        assert "fact" in fact_json
        return

    cell(21)  # state = api_flow("https://catfact.ninja/fact")
    state = api_flow(fact_url)

    # In [22]
    @task(name="t-example3-1")
    def call_api(url):  # noqa: F811
        response = http_get(url)
        print(response.status_code)
        return response.json()

    @task(name="t-example3-2")
    def parse_fact(response):
        print(response["fact"])
        return

    @flow(name="f-example3")
    def api_flow(url):  # noqa: F811
        fact_json = call_api(url)
        parse_fact(fact_json)
        return

    cell(23)  # state = api_flow("https://catfact.ninja/fact")
    state = api_flow(fact_url)
    cell(24)  # print(state): Prefect 2.1 printed the task states; headrace returns None
    print(state)
    print([(r.name, r.state.name) for r in api_flow.last_run.records])

    # In [25]
    @flow
    def common_flow(config: dict):
        print("I am a subgraph that shows up in lots of places!")
        intermediate_result = 42
        return intermediate_result

    @flow
    def main_flow():
        # do some things
        # then call another flow function
        data = common_flow(config={})
        assert data == 42
        # do more things

    cell(26)  # flow_state = main_flow()
    flow_state = main_flow()
    print(flow_state)
    print(f"subflow of {main_flow.name!r}: {common_flow.last_run.parent is main_flow.last_run}")

    # In [29]
    @task(name="async-url")
    async def call_api(url):  # noqa: F811
        response = http_get(url)
        print(response.status_code)
        return response.json()

    @flow(name="async-flow")
    async def async_flow(url):
        fact_json = await call_api(url)
        assert "fact" in fact_json
        return

    cell(30)  # asyncio.run(async_flow("https://catfact.ninja/fact"))
    print(asyncio.run(async_flow(fact_url)))

    # Under Jupyter an event loop is already running: await the flow instead.
    async def notebook_cell():
        return await async_flow(fact_url)

    print(asyncio.run(notebook_cell()))


if __name__ == "__main__":
    main()
