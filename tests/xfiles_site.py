"""A tiny X-Files transcript site for the seed 000/001 acceptance tests.

The pages are generated in memory (synthetic text only) in the 1990s markup
the tutorial scrapes, and served by `http.server.ThreadingHTTPServer` on
127.0.0.1, port 0, from a background thread:

    /                         the index: links to every episode page with a
                              relative href ("transcrp/scrpNNN.htm"), so
                              `base_url + href` is the page's URL, plus a few
                              links the scraper must ignore
    /transcrp/scrpNNN.htm     an episode: `<title>Name - 1X01 *</title>`,
                              dialogue as `<b>NAME:</b> text<br>` or, on some
                              pages (which then have no <b> at all),
                              `<span class="char">NAME:</span> text<br>`
    /transcrp/tlg105.htm      a Lone Gunmen page, not linked from the index

With `broken=True` the index also links "transcrp/scrp999.htm" (at position
`BROKEN_POSITION`), which answers 404.

The server counts requests per path (`site.hits`, including 404s) and the
largest number of requests it handled at once (`site.max_concurrent`). A
request is counted as concurrent from the moment the handler starts until
just before it answers (so the count never exceeds what clients really had
in flight), and `delay` seconds are spent inside that window, so overlapping
fetches are observable. The delay stands in for network
latency: it is what lets a throttled parallel run show its concurrency.
"""

from __future__ import annotations

import collections
import html
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Episode:
    """One transcript page. `lines` are (speaker, words) exactly as a scraper should read them."""

    href: str  # relative to the site root, e.g. "transcrp/scrp101.htm"
    title: str  # as the scraper returns it, e.g. "The Quiet Orchard - 1X01"
    lines: tuple[tuple[str, str], ...]
    span_markup: bool = False  # <span class="char"> instead of <b>

    @property
    def path(self) -> str:
        return "/" + self.href


# Sentences shared out among episodes. Synthetic, with the awkward characters a
# scraper and a database must carry through unchanged: apostrophes, double
# quotes, an ampersand, and non-ASCII letters and punctuation.
_SENTENCES = (
    "I don't think the lights in the barn were on when we drove past.",
    'The sheriff called it "a weather balloon" twice before lunch.',
    "We're three hours from the nearest motel, Scully.",
    "The café owner swears the jukebox played by itself at 3 a.m.",
    "Mulder & I signed the evidence log at noon; it's missing now.",
    "Señor Ibáñez says the river ran backwards for an hour.",
    "It's a naïve theory, but it fits every one of the reports.",
    "Don't touch that — it's still warm.",
    "Her notes end mid-sentence: “they are counting us”.",
    "The coroner's report lists the cause of death as 'undetermined'.",
    "Über-strange, even for this office.",
    "That's the fourth farmhouse with the same symbol on the door.",
    "I'd like to see the tapes before anyone else does.",
    "Nobody in Ålesund has heard of this ship.",
)
_SPEAKERS = ("MULDER", "SCULLY", "SKINNER", "SHERIFF", "WITNESS", "O'MALLEY")

# (code, name, lone-line overrides): name and code make the title, and the
# extra lines (speaker, words) are appended after the shared sentences.
_EPISODES = (
    ("101", "The Quiet Orchard - 1X01", ()),
    ("102", "Salt Flats - 1X02", ()),
    ("103", "Counting Crows - 1X03", ()),
    (
        "104",
        "Static Garden - 1X04",
        (("BYERS", "The signal is a loop of programming from a station that closed in 1971."),),
    ),
    ("105", "Low Tide - 1X05", ()),
    ("106", "Paper Moons - 1X06", ()),
    ("201", "The Glass Parish - 2X01", ()),
    ("202", "Dead Reckoning - 2X02", ()),
    (
        "203",
        "Ghost in the Mainframe - 2X03",
        (("LANGLY", "Whoever did the programming on this thing didn't want it found."),),
    ),
    ("204", "Winter Wheat - 2X04", ()),
    ("301", "Nine Lanterns - 3X01", ()),
    ("302", "Cold Harbour - 3X02", ()),
)
# Pages that use <span class="char"> for speakers (and have no <b> at all).
_SPAN_CODES = frozenset({"103", "202", "302"})


def _episode(n: int, code: str, title: str, extra: tuple) -> Episode:
    shared = tuple(
        (_SPEAKERS[(n + i) % len(_SPEAKERS)], _SENTENCES[(3 * n + i) % len(_SENTENCES)])
        for i in range(6)
    )
    return Episode(
        href=f"transcrp/scrp{code}.htm",
        title=title,
        lines=shared + tuple(extra),
        span_markup=code in _SPAN_CODES,
    )


EPISODES: tuple[Episode, ...] = tuple(
    _episode(n, code, title, extra) for n, (code, title, extra) in enumerate(_EPISODES)
)

LONE_GUNMEN = Episode(
    href="transcrp/tlg105.htm",
    title="Three Guys and a Modem - 1AEB05",
    lines=(
        ("LANGLY", "Nobody's touched the router since Tuesday."),
        ("FROHIKE", "It's a pretty tidy bit of programming, I'll give them that."),
        ("BYERS", "Then who rebooted it?"),
    ),
)

BROKEN_HREF = "transcrp/scrp999.htm"
BROKEN_POSITION = 4  # index of the broken link among the episode links

# The rows a query for '%programming%' must find after every episode is stored.
PROGRAMMING_ROWS = tuple(
    (ep.title, who, what) for ep in EPISODES for who, what in ep.lines if "programming" in what
)
LONE_GUNMEN_PROGRAMMING_ROW = next(
    (LONE_GUNMEN.title, who, what) for who, what in LONE_GUNMEN.lines if "programming" in what
)


def render_episode(episode: Episode) -> str:
    """The page for `episode`, in the markup the tutorial's scraper expects."""
    out = [
        "<HTML>",
        "<HEAD>",
        f"<TITLE>{html.escape(episode.title)} *</TITLE>",
        "</HEAD>",
        '<BODY BGCOLOR="#FFFFFF" TEXT="#000000">',
        '<CENTER><FONT SIZE="+2">Transcript</FONT></CENTER>',
        "<P>",
        "<I>[The following is an unofficial transcript.]</I><BR>",
        "<P>",
    ]
    for who, what in episode.lines:
        words = html.escape(what, quote=False)
        if episode.span_markup:
            out.append(f'<span class="char">{html.escape(who)}:</span> {words}<BR>')
        else:
            out.append(f"<b>{html.escape(who)}:</b> {words}<BR>")
        out.append("<P>")
    out += ["<HR>", "</BODY>", "</HTML>"]
    return "\n".join(out)


def render_index(hrefs: list[str]) -> str:
    """The home page: episode links among links the scraper must skip."""
    out = [
        "<HTML><HEAD><TITLE>Inside the Transcripts</TITLE></HEAD>",
        '<BODY BGCOLOR="#000000" TEXT="#00FF00">',
        '<A NAME="top"></A>',
        '<A HREF="news.htm">What\'s new</A><BR>',
        "<TABLE>",
    ]
    for href in hrefs:
        out.append(f'<TR><TD><A HREF="{href}">{html.escape(href)}</A></TD></TR>')
    out += [
        "</TABLE>",
        '<A HREF="scripts.htm#tlg">The Lone Gunmen</A><BR>',
        '<A HREF="mailto:webmaster@example.invalid">Mail</A>',
        "</BODY></HTML>",
    ]
    return "\n".join(out)


@dataclass
class XFilesSite:
    """The site, served while started. Use as a context manager or call start()/stop().

    `delay` (seconds, may be changed while running) is spent in every request.
    `broken=True` adds a link to a missing page (see the module docstring).
    """

    delay: float = 0.0
    broken: bool = False
    hits: collections.Counter = field(default_factory=collections.Counter, init=False)
    max_concurrent: int = field(default=0, init=False)
    _active: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    # -- content -------------------------------------------------------------
    @property
    def hrefs(self) -> list[str]:
        """The episode links of the index, in page order (the broken one included)."""
        hrefs = [ep.href for ep in EPISODES]
        if self.broken:
            hrefs.insert(BROKEN_POSITION, BROKEN_HREF)
        return hrefs

    @property
    def pages(self) -> dict[str, bytes]:
        pages = {"/": render_index(self.hrefs)}
        for ep in (*EPISODES, LONE_GUNMEN):
            pages[ep.path] = render_episode(ep)
        return {path: text.encode("utf-8") for path, text in pages.items()}

    @property
    def base_url(self) -> str:
        """The root URL, ending with "/"."""
        if self._server is None:
            raise RuntimeError("the site is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def url(self, href: str) -> str:
        return self.base_url + href

    def episode_hits(self) -> dict[str, int]:
        """Requests per episode path (every linked episode, fetched or not)."""
        return {ep.path: self.hits[ep.path] for ep in EPISODES}

    # -- serving -------------------------------------------------------------
    def start(self) -> XFilesSite:
        pages = self.pages
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with site._lock:
                    site.hits[path] += 1
                    site._active += 1
                    site.max_concurrent = max(site.max_concurrent, site._active)
                try:
                    if site.delay:
                        time.sleep(site.delay)  # simulated latency, see module docstring
                finally:
                    # Leave the count before answering: a client can only start its next
                    # request after this answer, so the count never exceeds the real overlap.
                    with site._lock:
                        site._active -= 1
                body = pages.get(path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),  # poll interval: how fast stop() returns
            name="xfiles-site",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None
            self._thread = None

    def __enter__(self) -> XFilesSite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
