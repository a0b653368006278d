"""An offline X-Files transcript site: generated pages and a small local server.

The tutorial scrapes a 1990s fan site of episode transcripts. This module
writes a stand-in for it into a directory and serves it on 127.0.0.1, so the
tutorial runs without the internet and without hammering anyone's server.
Every word is SYNTHETIC: titles, names and dialogue come from word lists and
a seeded random generator (the same seed writes the same site, byte for
byte); no real transcript text is used.

The layout is the one the tutorial's scraper reads:

    index.htm                 the home page (served at "/"): links to every episode
                              with a relative href "transcrp/scrpNNN.htm" (NNN is season
                              and episode, e.g. 320), grouped by season, among links the
                              scraper must ignore (news, mail, the Lone Gunmen list)
    transcrp/scrpNNN.htm      an episode: <TITLE>Name - 3X20 *</TITLE>, then the dialogue,
                              one `<b>NAME:</b> words<BR>` per line with the words wrapped
                              over several source lines; some pages use
                              `<span class="char">NAME:</span>` instead and then have no <b>
                              at all; stage directions in <I>[...]</I> are not dialogue
    transcrp/tlg105.htm       a Lone Gunmen episode, NOT linked from the index (only
                              from scripts.htm), in which FROHIKE says "It's a pretty neat
                              bit of programming."
    scripts.htm               the list of Lone Gunmen transcripts

Dialogue is a scraper's and a database's awkward case on purpose: apostrophes
(also in names such as O'NEIL and in some titles), double quotes, ampersands,
dashes and non-ASCII letters. A few lines, on a few pages, mention
"programming": the tutorial's final query finds them. `Site.episodes` holds
what a correct scraper must return for each page, so tests can compare.

`SiteServer` serves a directory with `ThreadingHTTPServer` on 127.0.0.1 (port 0
picks a free one). Every request waits `delay` seconds (default 0.02) before
it is answered: a stand-in for network latency, which is what lets a parallel
run beat a sequential one and lets a throttle show. The server counts
requests per path (`hits`) and the most it was serving at once
(`max_concurrent`).

    with offline_site() as server:          # generate into a temp dir and serve it
        print(server.url, len(server.site.episodes))

From the command line, generate and serve until Ctrl-C:

    python -m examples.xfiles.site --port 8000 [--dir DIR] [--seed N] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import html
import random
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_SEED = 1993
DEFAULT_EPISODES = 200
DEFAULT_DELAY = 0.02
EPISODES_PER_SEASON = 23  # so 200 episodes keep three-digit codes (season 9 ends at 923)

LONE_GUNMEN_HREF = "transcrp/tlg105.htm"
LONE_GUNMEN_LINE = ("FROHIKE", "It's a pretty neat bit of programming.")


@dataclass(frozen=True)
class Episode:
    """One transcript page and what a correct scraper reads from it.

    `title` is the page title without the trailing " *"; `lines` are
    (speaker, words) in page order, words with single spaces.
    """

    href: str  # relative to the site root, e.g. "transcrp/scrp320.htm"
    title: str
    lines: tuple[tuple[str, str], ...]
    span_markup: bool = False  # speakers in <span class="char"> instead of <b>

    @property
    def rows(self) -> list[tuple[str, str, str]]:
        """(episode, character, text): the rows the tutorial stores for this page."""
        return [(self.title, who, what) for who, what in self.lines]


@dataclass(frozen=True)
class Site:
    """The whole site: the linked episodes in index order, and the unlinked Lone Gunmen page."""

    seed: int
    episodes: tuple[Episode, ...]
    lone_gunmen: Episode

    @property
    def line_count(self) -> int:
        """Dialogue lines over every linked episode."""
        return sum(len(ep.lines) for ep in self.episodes)

    def rows_mentioning(self, word: str, *, lone_gunmen: bool = False) -> list[tuple]:
        """(episode, character, text) rows whose text contains `word`, in page order."""
        pages = [*self.episodes, self.lone_gunmen] if lone_gunmen else self.episodes
        return [row for ep in pages for row in ep.rows if word in row[2]]

    def pages(self) -> dict[str, str]:
        """Every file of the site: relative path -> HTML text."""
        out = {
            "index.htm": render_index(self.episodes),
            "scripts.htm": render_scripts(self.lone_gunmen),
            self.lone_gunmen.href: render_episode(self.lone_gunmen, self.seed),
        }
        for ep in self.episodes:
            out[ep.href] = render_episode(ep, self.seed)
        return out

    def write(self, directory: str | Path) -> Path:
        """Write every page under `directory` (UTF-8) and return the directory."""
        root = Path(directory)
        for relative, text in self.pages().items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return root


# -- the synthetic vocabulary ----------------------------------------------------------------
# Nothing here mentions "programming": only the lines planted below do, so a query for it
# finds exactly those.

_REGULARS = ("MULDER", "SCULLY", "SKINNER", "BYERS", "LANGLY", "FROHIKE")
_ROLES = ("SHERIFF", "DEPUTY", "DR.", "NURSE", "AGENT", "FATHER", "MAYOR", "")
_SURNAMES = (
    "O'NEIL",
    "MÜLLER",
    "IBÁÑEZ",
    "HALVORSEN",
    "DUBOIS",
    "O'MALLEY",
    "NAKAMURA",
    "KOWALCZYK",
    "BRANDT",
    "ÅSTRÖM",
    "PRICE",
    "D'AMICO",
    "WEBB",
    "ESPÍNOLA",
)
_TITLE_WORDS = (
    ("Quiet", "Glass", "Salt", "Paper", "Static", "Hollow", "Ninth", "Cold", "Silent"),
    ("Amber", "Iron", "Pale", "Sunken", "Broken", "Distant", "Burning", "Northern"),
    ("Orchard", "Parish", "Harbour", "Lanterns", "Garden", "Moons", "Tide", "Wheat"),
    ("Signal", "Choir", "Meridian", "Causeway", "Ledger", "Furnace", "Vigil", "Sparrow"),
)
_SLOTS = {
    "place": (
        "the barn",
        "the motel in Bellefleur",
        "the café on Route 9",
        "the old cannery",
        "the weather station",
        "the morgue",
        "the Zürich office",
    ),
    "town": ("Ålesund", "Gibsonton", "Reykjavík", "Braddock Heights", "São Tomé", "Bellefleur"),
    "thing": ("the jukebox", "the river", "the compass", "the lighthouse lamp", "the clock"),
    "official": ("sheriff", "coroner", "fire marshal", "mayor", "base commander"),
    "euphemism": ("a weather balloon", "swamp gas", "a prank", "an electrical fault"),
    "cause": ("undetermined", "exposure", "natural causes", "cardiac arrest"),
    "evidence": ("tapes", "autopsy photos", "phone records", "soil samples", "flight logs"),
    "time": ("3 a.m.", "midnight", "a quarter past four", "dawn"),
    "count": ("every one", "nine", "most", "all but two"),
    "ordinal": ("third", "fourth", "fifth", "sixth"),
    "building": ("farmhouse", "church", "trailer", "motel room", "lighthouse"),
    "adjective": ("natural", "human", "an accident", "random", "local"),
    "vehicle": ("ship", "truck", "helicopter", "fishing boat"),
    "temp": ("warm", "humming", "wet", "moving"),
    "verb": ("counting", "watching", "following", "copying"),
    "hours": ("three", "four", "six", "eleven"),
}
_SENTENCES = (
    "I don't think {place} was locked when we got there.",
    'The {official} called it "{euphemism}" twice before lunch.',
    "We're {hours} hours from {place}.",
    "Señor Ibáñez swears {thing} moved by itself at {time}.",
    "It's a naïve theory, but it fits {count} of the reports.",
    "Don't touch that — it's still {temp}.",
    "Her notes end mid-sentence: “they are {verb} us”.",
    "The coroner's report lists the cause of death as '{cause}'.",
    "That's the {ordinal} {building} with the same symbol on the door.",
    "I'd like to see the {evidence} before anyone else does.",
    "Nobody in {town} has heard of this {vehicle}.",
    "You can't seriously believe that.",
    "Mulder & I signed for the {evidence} at {time}; they're gone now.",
    "What if {thing} isn't {adjective} at all?",
    "Über-strange, even for this office.",
    'He kept saying "{euphemism}" like he had rehearsed it.',
    "Meet me at {place} at {time}.",
    "I've read the file. I don't need the speech.",
    "Somebody wanted us in {town}, and here we are.",
    "Let's go.",
)
_DIRECTIONS = (
    "[Night. A farmhouse outside {town}.]",
    "[Interior: {place}. The lights flicker.]",
    "[Later. Rain on the windshield.]",
    "[{time}. A phone rings twice, then stops.]",
)
_PROGRAMMING_LINES = (
    ("BYERS", "Whoever did the programming on this thing didn't want it found."),
    ("LANGLY", "The signal is a loop of programming from a station that closed in 1971."),
    ("SCULLY", "Mulder, late-night programming is not evidence of anything."),
    ("FROHIKE", "Give me a weekend and some decent programming & I'll find the back door."),
)
_LONE_GUNMEN_TITLE = "Three Guys and a Modem - 1AEB05"


def _fill(template: str, rng: random.Random) -> str:
    return template.format(**{slot: rng.choice(words) for slot, words in _SLOTS.items()})


def _titles(rng: random.Random, count: int) -> list[str]:
    """Distinct episode names: "Adjective Noun", with a few possessives ("O'Neil's Ledger")."""
    first = _TITLE_WORDS[0] + _TITLE_WORDS[1]
    second = _TITLE_WORDS[2] + _TITLE_WORDS[3]
    names = [f"{a} {b}" for a in first for b in second]
    owners = [s.title() for s in _SURNAMES]  # "O'Neil", "Müller": apostrophes and non-ASCII
    names += [f"{owner}'s {b}" for owner in owners for b in second]
    rng.shuffle(names)
    if count > len(names):
        raise ValueError(f"at most {len(names)} episodes, asked for {count}")
    # Every eighth title a possessive, so the awkward ones are spread through the site.
    plain = [n for n in names if "'s " not in n]
    owned = [n for n in names if "'s " in n]
    return [owned.pop() if i % 8 == 5 else plain.pop() for i in range(count)]


def _dialogue(rng: random.Random, extra: tuple[str, str] | None) -> tuple[tuple[str, str], ...]:
    guests = [
        " ".join(filter(None, (rng.choice(_ROLES), rng.choice(_SURNAMES))))
        for _ in range(rng.randint(2, 4))
    ]
    cast = list(_REGULARS[:3]) * 3 + list(_REGULARS[3:]) + guests
    lines = []
    for _ in range(rng.randint(25, 55)):
        sentences = rng.sample(_SENTENCES, rng.randint(1, 3))  # distinct within a line
        words = " ".join(_fill(sentence, rng) for sentence in sentences)
        lines.append((rng.choice(cast), words))
    if extra is not None:
        lines.insert(rng.randrange(len(lines)), extra)
    return tuple(lines)


@functools.lru_cache(maxsize=8)
def make_site(seed: int = DEFAULT_SEED, episodes: int = DEFAULT_EPISODES) -> Site:
    """The site for `seed` with `episodes` linked episodes (deterministic; cached)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    rng = random.Random(seed)
    titles = _titles(rng, episodes)
    planted = rng.sample(range(episodes), min(3, episodes))
    out = []
    for i, name in enumerate(titles):
        season, number = divmod(i, EPISODES_PER_SEASON)
        code = f"{season + 1}{number + 1:02d}"
        extra = _PROGRAMMING_LINES[planted.index(i)] if i in planted else None
        out.append(
            Episode(
                href=f"transcrp/scrp{code}.htm",
                title=f"{name} - {season + 1}X{number + 1:02d}",
                lines=_dialogue(rng, extra),
                span_markup=rng.random() < 0.15,
            )
        )
    lone = Episode(
        href=LONE_GUNMEN_HREF,
        title=_LONE_GUNMEN_TITLE,
        lines=(
            ("LANGLY", "Nobody's touched the router since Tuesday."),
            ("BYERS", "Then who rebooted it at 3 a.m.?"),
            LONE_GUNMEN_LINE,
            ("LANGLY", "Don't encourage him."),
        ),
    )
    return Site(seed=seed, episodes=tuple(out), lone_gunmen=lone)


# -- the markup --------------------------------------------------------------------------------


def _text(value: str) -> str:
    return html.escape(value, quote=False)


def render_episode(episode: Episode, seed: int = DEFAULT_SEED) -> str:
    """The page for `episode`: 1990s HTML with dialogue wrapped at 72 columns."""
    # Stage directions are chosen from the page's own generator, so a page is stable.
    rng = random.Random(f"{seed}:{episode.href}")
    name = episode.title.rsplit(" - ", 1)[0]
    out = [
        "<HTML>",
        "<HEAD>",
        '<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=utf-8">',
        f"<TITLE>{_text(episode.title)} *</TITLE>",
        "</HEAD>",
        '<BODY BGCOLOR="#FFFFFF" TEXT="#000000" LINK="#0000CC" VLINK="#660099">',
        f'<CENTER><FONT SIZE="+2">{_text(name)}</FONT><BR>',
        "<I>An unofficial transcript. Typed from the broadcast; errors are ours.</I>",
        "</CENTER>",
        "<HR>",
    ]
    for who, what in episode.lines:
        if rng.random() < 0.1:
            out.append(f"<P><I>{_text(_fill(rng.choice(_DIRECTIONS), rng))}</I>")
        # Wrap like a hand-edited page; never at a hyphen, so rejoining restores the words.
        words = "\n".join(
            textwrap.wrap(what, width=72, break_long_words=False, break_on_hyphens=False)
        )
        if episode.span_markup:
            speaker = f'<span class="char">{_text(who)}:</span>'
        else:
            speaker = f"<b>{_text(who)}:</b>"
        out += ["<P>", f"{speaker} {_text(words)}<BR>"]
    out += [
        "<P>",
        "<HR>",
        '<CENTER><A HREF="../index.htm">Back to the episode list</A></CENTER>',
        "</BODY>",
        "</HTML>",
        "",
    ]
    return "\n".join(out)


def render_index(episodes: tuple[Episode, ...]) -> str:
    """The home page: every episode by season, among links the scraper must skip."""
    out = [
        "<HTML>",
        "<HEAD><TITLE>Inside the Transcripts</TITLE></HEAD>",
        '<BODY BGCOLOR="#000000" TEXT="#33FF33" LINK="#FFFF00" VLINK="#CCCC00">',
        '<A NAME="top"></A>',
        '<CENTER><FONT SIZE="+3">Inside the Transcripts</FONT><BR>',
        "<I>Best viewed at 800x600. Last updated 14 March 1999.</I></CENTER>",
        '<A HREF="news.htm">What\'s new</A> | <A HREF="scripts.htm#tlg">The Lone Gunmen</A>',
        "<HR>",
    ]
    season = None
    for ep in episodes:
        name, code = ep.title.rsplit(" - ", 1)
        if code.split("X")[0] != season:
            if season is not None:
                out.append("</TABLE>")
            season = code.split("X")[0]
            out += [f'<A NAME="s{season}"></A><H2>Season {season}</H2>', "<TABLE BORDER=0>"]
        out.append(f'<TR><TD>{code}</TD><TD><A HREF="{ep.href}">{_text(name)}</A></TD></TR>')
    out += [
        "</TABLE>",
        "<HR>",
        '<A HREF="#top">Top</A> | <A HREF="mailto:webmaster@example.invalid">Mail me</A>',
        "</BODY>",
        "</HTML>",
        "",
    ]
    return "\n".join(out)


def render_scripts(lone_gunmen: Episode) -> str:
    """The spin-off's list: the only page linking the Lone Gunmen transcript."""
    name, code = lone_gunmen.title.rsplit(" - ", 1)
    return "\n".join(
        [
            "<HTML><HEAD><TITLE>Other transcripts</TITLE></HEAD><BODY>",
            '<A NAME="tlg"></A><H2>The Lone Gunmen</H2>',
            f'<A HREF="{lone_gunmen.href}">{code}: {_text(name)}</A><BR>',
            '<A HREF="index.htm">Back</A>',
            "</BODY></HTML>",
            "",
        ]
    )


# -- the server --------------------------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    """Serves the site's files; counts each GET and waits `delay` before answering."""

    server: _Server

    # The pages are written as UTF-8; say so, as FetchURL decodes by the declared charset.
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".htm": "text/html; charset=utf-8",
        ".html": "text/html; charset=utf-8",
    }

    def do_GET(self):
        owner = self.server.owner
        owner._enter(self.path.split("?", 1)[0])
        try:
            if owner.delay:
                time.sleep(owner.delay)  # simulated network latency, see the module docstring
        finally:
            # Leave the count before answering: a client sends its next request only after
            # this answer, so `max_concurrent` never exceeds what clients had in flight.
            owner._leave()
        super().do_GET()

    def log_message(self, format, *args):
        if not self.server.owner.quiet:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many parallel clients must not meet a refused connection
    owner: SiteServer


class SiteServer:
    """Serve `directory` on http://127.0.0.1:`port`/ from a background thread.

    `delay` seconds (may be changed while running) are spent in every GET.
    `hits` counts GETs per path, 404s included; `max_concurrent` is the most
    GETs it was serving at once; `reset_counts()` zeroes both. Use as a
    context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = DEFAULT_DELAY,
        quiet: bool = True,
        site: Site | None = None,
    ):
        self.directory = Path(directory)
        self.host, self.port = host, port
        self.delay = delay
        self.quiet = quiet
        self.site = site  # what was written there, when known
        self.hits: collections.Counter[str] = collections.Counter()
        self.max_concurrent = 0
        self._active = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The site's root URL, ending with "/"."""
        if self._server is None:
            raise RuntimeError("the site is not being served: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def requests(self) -> int:
        """GETs served so far."""
        return sum(self.hits.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.hits.clear()
            self.max_concurrent = 0

    def _enter(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1
            self._active += 1
            self.max_concurrent = max(self.max_concurrent, self._active)

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1

    def start(self) -> SiteServer:
        if self._server is not None:
            raise RuntimeError("the site is already being served")
        handler = functools.partial(_Handler, directory=str(self.directory))
        server = self._server = _Server((self.host, self.port), handler)
        server.owner = self
        self._thread = threading.Thread(
            target=server.serve_forever,
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
            self._server = self._thread = None

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def offline_site(
    seed: int = DEFAULT_SEED,
    episodes: int = DEFAULT_EPISODES,
    delay: float = DEFAULT_DELAY,
    port: int = 0,
) -> Iterator[SiteServer]:
    """Write the site into a temporary directory, serve it, and remove it afterwards."""
    site = make_site(seed, episodes)
    with tempfile.TemporaryDirectory(prefix="xfiles-site-") as directory:
        site.write(directory)
        with SiteServer(directory, port=port, delay=delay, site=site) as server:
            yield server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.xfiles.site",
        description="Generate the synthetic X-Files transcript site and serve it on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--dir", help="write the site here (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--episodes", type=int, default=DEFAULT_EPISODES)
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help="seconds per request")
    args = parser.parse_args(argv)

    site = make_site(args.seed, args.episodes)
    with contextlib.ExitStack() as stack:
        directory = args.dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="xfiles-"))
        site.write(directory)
        server = SiteServer(directory, port=args.port, delay=args.delay, quiet=False, site=site)
        print(f"{len(site.episodes)} episodes ({site.line_count} lines) written to {directory}")
        with server, contextlib.suppress(KeyboardInterrupt):
            print(f"serving {server.url} (Ctrl-C stops)", flush=True)
            threading.Event().wait()  # the server thread answers; this one waits for Ctrl-C


if __name__ == "__main__":
    main()
