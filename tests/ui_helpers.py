"""A real uvicorn serving an ASGI app on 127.0.0.1, in a thread, for the UI's tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, port: int | None = None) -> Iterator[str]:
    """The base URL of uvicorn serving `app` until the block ends."""
    import uvicorn

    port = port or free_port()
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    try:
        while not served.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        thread.join(10)


def fetched(home, page: str, api: str) -> tuple[str, dict]:
    """A page's HTML and an API path's JSON, from uvicorn serving the UI over the history
    in `home` for as long as the two requests take."""
    import json
    import urllib.request

    from headrace.server import create_app
    from headrace.server.security import allowed_hosts_for

    port = free_port()
    app = create_app(f"sqlite:///{home / 'headrace.db'}", allowed_hosts_for("127.0.0.1", port))
    with serving(app, port) as base:
        with urllib.request.urlopen(f"{base}{page}", timeout=10) as response:
            html = response.read().decode()
        with urllib.request.urlopen(f"{base}{api}", timeout=10) as response:
            return html, json.loads(response.read())


CHROMIUM = "/usr/bin/chromium"


@contextlib.contextmanager
def chromium_page(home, path: str, height: int = 700):
    """(page, dialogs): Debian's Chromium through Playwright on `path` of the UI over the
    history in `home`, served by uvicorn, until the block ends. Skips the test when
    Chromium is missing (.ci/run installs it)."""
    import shutil

    import pytest

    from headrace.server import create_app
    from headrace.server.security import allowed_hosts_for

    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    app = create_app(f"sqlite:///{home / 'headrace.db'}", allowed_hosts_for("127.0.0.1", port))
    with serving(app, port) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": height})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{base}{path}")
            yield page, dialogs
        finally:
            browser.close()
