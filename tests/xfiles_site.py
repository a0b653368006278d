"""A tiny X-Files transcript site for the seed 000/001 acceptance tests.

The pages are generated in memory (synthetic text only) in the 1990s markup
the tutorial scrapes, and served by the tutorial example's `SiteServer` on
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
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# The tutorial example's server serves this site too (it counts requests and concurrency).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.xfiles.site import SiteServer  # noqa: E402


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

    `delay` (seconds) is spent in every request. `broken=True` adds a link to
    a missing page (see the module docstring). The pages are written to a
    temporary directory and served by the example's `SiteServer`, which
    does the counting.
    """

    delay: float = 0.0
    broken: bool = False
    _server: SiteServer | None = field(default=None, init=False, repr=False)
    _served: SiteServer | None = field(default=None, init=False, repr=False)  # counts stay
    _directory: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)

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
        return self._server.url

    def url(self, href: str) -> str:
        return self.base_url + href

    @property
    def hits(self) -> collections.Counter:
        """Requests per path, 404s included."""
        return self._served.hits if self._served is not None else collections.Counter()

    @property
    def max_concurrent(self) -> int:
        return self._served.max_concurrent if self._served is not None else 0

    def episode_hits(self) -> dict[str, int]:
        """Requests per episode path (every linked episode, fetched or not)."""
        return {ep.path: self.hits[ep.path] for ep in EPISODES}

    # -- serving -------------------------------------------------------------
    def start(self) -> XFilesSite:
        self._directory = tempfile.TemporaryDirectory(prefix="xfiles-site-")
        root = Path(self._directory.name)
        for path, body in self.pages.items():
            target = root / ("index.html" if path == "/" else path.lstrip("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        self._server = self._served = SiteServer(root, delay=self.delay).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> XFilesSite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
