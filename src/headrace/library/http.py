"""HTTP tasks: fetch a URL politely.

    fetch = FetchURL(tags=["web"], timeout_seconds=10, attempts=3)
    page = fetch(url)            # the body as text

A connection error, a timeout or a 5xx answer is tried again, `attempts`
times in all, waiting `backoff` seconds doubled each time; a 4xx answer
fails at once with the URL and the status in the message. Only the
standard library is used.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request

from headrace.tasks import Task


class HTTPError(Exception):
    """An HTTP answer that is not a success; `status` and `url` say which."""

    def __init__(self, url: str, status: int, reason: str):
        self.url, self.status = url, status
        super().__init__(f"GET {url} answered {status} {reason}")


class FetchURL(Task):
    """GET a URL and return its body as text (decoded by the answer's charset)."""

    def __init__(
        self,
        timeout_seconds: float = 30.0,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep=time.sleep,
        **kw,
    ):
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.backoff = backoff
        self._sleep = sleep  # injectable, so tests do not wait
        kw.setdefault("name", "fetch_url")
        super().__init__(**kw)

    def run(self, url: str) -> str:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_seconds) as answer:
                    charset = answer.headers.get_content_charset() or "utf-8"
                    return answer.read().decode(charset, errors="replace")
            except urllib.error.HTTPError as exc:
                error = HTTPError(url, exc.code, exc.reason)
                if exc.code < 500:
                    raise error from None  # the request is wrong: trying again will not help
            except (
                urllib.error.URLError,
                http.client.HTTPException,
                TimeoutError,
                ConnectionError,
            ) as exc:
                error = ConnectionError(f"GET {url} failed: {getattr(exc, 'reason', exc)}")
            if attempt < self.attempts:
                self._sleep(delay)
                delay *= 2
        raise error
