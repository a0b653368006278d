"""The X-Files tutorial (seeds 000 and 001) as a headrace program; docs/tutorial.md tells it.

We scrape every episode transcript of a 1990s fan site and store the
dialogue in SQLite, in five stages that each reuse the one before:

1. one episode: `url -> retrieve_url -> scrape_dialogue`;
2. every episode: the home page's links, `retrieve_url.map`, `scrape_dialogue.map`,
   one page at a time (`LocalExecutor`, the default);
3. the same flow, unchanged, on `ThreadExecutor(8)` with at most three requests
   to the site at once (`throttle={"web": 3}`);
4. the flow extended with a table and an insert mapped over the episodes; the
   scraped states are handed back (`task_states`, `start_tasks`), so no page is
   fetched again;
5. an episode the home page does not link (the Lone Gunmen's): the `bypass`
   parameter and `start_tasks` skip the home page.

`main()` runs the stages against the bundled offline site (see `site`), or a
real one with `--url`, and prints each stage's wall time, the rows that mention
"programming", and where the run history is. Values reach SQLite as
parameters, never as SQL text, so the seed's quote doubling is gone.

Needs BeautifulSoup (`pip install beautifulsoup4`; it is in headrace's dev extra).
"""

from __future__ import annotations

import argparse
import collections
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from bs4 import BeautifulSoup

from headrace import Flow, Parameter, Task, task, unmapped
from headrace.executors import ThreadExecutor
from headrace.library.http import FetchURL
from headrace.library.sqlite import SQLiteQuery, SQLiteScript
from headrace.states import FlowState
from headrace.store import get_store, home

from .site import offline_site

# -- the tasks -------------------------------------------------------------------------------

# Tagged "web" so a run can cap how many requests reach the site at once.
retrieve_url = FetchURL(name="retrieve_url", tags=["web"], timeout_seconds=10, attempts=3)


@task
def scrape_dialogue(episode_html):
    """
    Given a string of html representing an episode page,
    returns a tuple of (title, [(character, text)]) of the dialogue from that
    episode
    """
    episode = BeautifulSoup(episode_html, "html.parser")

    title = episode.title.text.strip().rstrip(" *")
    convos = episode.find_all("b") or episode.find_all("span", {"class": "char"})
    dialogue = []
    for item in convos:
        who = item.text.rstrip(": ").rstrip(" *")
        # The page wraps long speeches over several lines: join them with single spaces.
        what = " ".join(str(item.next_sibling or "").split()).rstrip(" *")
        dialogue.append((who, what))
    return (title, dialogue)


@task
def create_episode_list(base_url, main_html, bypass):
    """
    Given the main page html, creates a list of episode URLs
    """
    if bypass:
        return [base_url]

    main_page = BeautifulSoup(main_html, "html.parser")

    episodes = []
    for link in main_page.find_all("a"):
        url = link.get("href")
        if "transcrp/scrp" in (url or ""):
            episodes.append(urljoin(base_url, url))

    return list(dict.fromkeys(episodes))  # an episode linked twice is fetched once


create_db = SQLiteScript(
    name="create_db",
    tags=["db"],
    script="""
        CREATE TABLE IF NOT EXISTS XFILES (
            EPISODE TEXT, LINE INTEGER, CHARACTER TEXT, TEXT TEXT,
            PRIMARY KEY (EPISODE, LINE)
        );
    """,
)

# OR REPLACE: storing an episode again replaces its lines, so a run can be repeated.
insert_episode = SQLiteQuery(
    name="insert_episode",
    tags=["db"],
    query="INSERT OR REPLACE INTO XFILES (EPISODE, LINE, CHARACTER, TEXT) VALUES (?, ?, ?, ?)",
)


@task
def episode_rows(episode):
    """One (title, line number, character, text) row per line of a scraped episode."""
    title, dialogue = episode
    return [(title, line, who, what) for line, (who, what) in enumerate(dialogue, 1)]


find_mentions = SQLiteQuery(
    name="find_mentions",
    query="SELECT EPISODE, CHARACTER, TEXT FROM XFILES WHERE TEXT LIKE ? ORDER BY EPISODE, LINE",
)


def programming_mentions(database):
    """Every stored line that says "programming", as (episode, character, text)."""
    return find_mentions(db=database, data=("%programming%",))


# -- the stages -------------------------------------------------------------------------------


def stage_1_one_episode(base_url: str) -> FlowState:
    """Scrape one episode and print its first five spoken lines."""
    with Flow("xfiles") as flow:
        url = Parameter("url")
        episode = retrieve_url(url)
        dialogue = scrape_dialogue(episode)

    episode_url = urljoin(base_url, "transcrp/scrp320.htm")
    outer_space = flow.run(parameters={"url": episode_url}, return_tasks=[dialogue])

    state = outer_space[dialogue]  # the State of the dialogue task
    first_five_spoken_lines = state.result()[1][:5]  # the result is (title, [(who, what)])
    print("\n".join(f"{speaker}: {words}" for speaker, words in first_five_spoken_lines))
    return outer_space


@dataclass
class XFilesFlow:
    """The flow of stages 2 to 5 and its tasks, by the names the tutorial gives them."""

    flow: Flow
    url: Parameter
    bypass: Parameter
    home_page: Task
    episodes: Task
    episode: Task
    dialogue: Task
    # Added by stage 4:
    db_file: Parameter | None = None
    db: Task | None = None
    rows: Task | None = None
    final: Task | None = None


def build_flow() -> XFilesFlow:
    """Every episode linked from the home page, fetched and scraped."""
    with Flow("xfiles") as flow:
        url = Parameter("url")
        bypass = Parameter("bypass", default=False, required=False)
        home_page = retrieve_url(url)
        episodes = create_episode_list(url, home_page, bypass=bypass)
        episode = retrieve_url.map(episodes)
        dialogue = scrape_dialogue.map(episode)

    return XFilesFlow(flow, url, bypass, home_page, episodes, episode, dialogue)


def stage_2_every_episode(xf: XFilesFlow, base_url: str) -> FlowState:
    """Scrape every episode, one page at a time (the default LocalExecutor)."""
    flow, dialogue = xf.flow, xf.dialogue

    scraped_state = flow.run(parameters={"url": base_url}, return_tasks=[dialogue])

    dialogue_state = scraped_state[dialogue]  # Mapped: one child State per episode
    for s in dialogue_state.map_states[:5]:
        title, lines = s.result()
        print(f"{title}: {s.name}, {len(lines)} lines")
    return scraped_state


def stage_3_in_parallel(xf: XFilesFlow, base_url: str) -> FlowState:
    """The same flow on eight threads, with at most three requests to the site at once."""
    flow, dialogue = xf.flow, xf.dialogue

    executor = ThreadExecutor(8)
    scraped_state = flow.run(
        parameters={"url": base_url},
        return_tasks=[dialogue],
        executor=executor,
        throttle={"web": 3},
    )

    dialogue_state = scraped_state[dialogue]
    for s in dialogue_state.map_states[:5]:
        title, lines = s.result()
        print(f"{title}: {s.name}, {len(lines)} lines")
    return scraped_state


def extend_with_database(xf: XFilesFlow) -> None:
    """Add stage 4's tasks to the flow: a table, and one insert per scraped episode."""
    flow, dialogue = xf.flow, xf.dialogue

    with flow:
        db_file = Parameter("db_file", default="xfiles_db.sqlite")
        db = create_db(db=db_file)
        rows = episode_rows.map(dialogue)
        final = insert_episode.map(db=unmapped(db_file), data=rows, upstream_tasks=[unmapped(db)])

    xf.db_file, xf.db, xf.rows, xf.final = db_file, db, rows, final


def stage_4_store(
    xf: XFilesFlow, base_url: str, database: str, scraped_state: FlowState
) -> FlowState:
    """Extend the flow with SQLite, reusing stage 3's states: no page is fetched again."""
    if xf.final is None:
        extend_with_database(xf)
    flow, db_file, db, rows, final = xf.flow, xf.db_file, xf.db, xf.rows, xf.final

    state = flow.run(
        parameters={"url": base_url, "db_file": database},
        executor=ThreadExecutor(8),
        throttle={"web": 3, "db": 1},  # SQLite writes one at a time: queue here, not in SQLite
        task_states=scraped_state.task_states,
        start_tasks=[db_file, db, rows],
    )

    stored = sum(child.is_successful() for child in state[final].map_states)
    print(f"{stored} of {len(state[final].map_states)} episodes stored in {database}")
    return state


def stage_5_lone_gunmen(xf: XFilesFlow, base_url: str, database: str) -> FlowState:
    """Store one more episode, which the home page does not link, without fetching the home page."""
    flow, url, bypass, episodes, db_file = xf.flow, xf.url, xf.bypass, xf.episodes, xf.db_file

    lone_gunmen_url = urljoin(base_url, "transcrp/tlg105.htm")
    final_state = flow.run(
        parameters={"url": lone_gunmen_url, "bypass": True, "db_file": database},
        start_tasks=[bypass, db_file, episodes, url],
    )

    print(f"home page: {final_state[xf.home_page].name}; {lone_gunmen_url}: {final_state.name}")
    return final_state


# -- running them all -------------------------------------------------------------------------


@dataclass
class StageReport:
    """How one stage went. `hits` (requests per path) and `max_concurrent` (the most
    requests the site served at once) are known only for the bundled site."""

    number: int
    title: str
    executor: str
    state: FlowState
    seconds: float
    hits: collections.Counter | None = None
    max_concurrent: int | None = None


def run_stages(base_url: str, database: str, server=None) -> tuple[XFilesFlow, list[StageReport]]:
    """Run stages 1 to 5 in order against `base_url`, storing into `database`.

    `server` is the bundled site's `SiteServer`, when that is what `base_url`
    serves: its request counts are then reset before each stage and reported.
    """
    xf = build_flow()
    reports: list[StageReport] = []

    def stage(number: int, title: str, executor: str, run: Callable[[], FlowState]) -> FlowState:
        print(f"\n== stage {number}: {title} ({executor})")
        if server is not None:
            server.reset_counts()
        started = time.perf_counter()
        state = run()
        seconds = time.perf_counter() - started
        hits = collections.Counter(server.hits) if server is not None else None
        most = server.max_concurrent if server is not None else None
        reports.append(StageReport(number, title, executor, state, seconds, hits, most))
        return state

    stage(1, "one episode", "LocalExecutor", lambda: stage_1_one_episode(base_url))
    stage(2, "every episode", "LocalExecutor", lambda: stage_2_every_episode(xf, base_url))
    scraped = stage(
        3,
        "every episode, throttled",
        "ThreadExecutor(8)",
        lambda: stage_3_in_parallel(xf, base_url),
    )
    stage(
        4,
        "into SQLite, states reused",
        "ThreadExecutor(8)",
        lambda: stage_4_store(xf, base_url, database, scraped),
    )
    stage(
        5, "the Lone Gunmen", "LocalExecutor", lambda: stage_5_lone_gunmen(xf, base_url, database)
    )
    return xf, reports


def print_summary(reports: list[StageReport]) -> None:
    """The stages' wall times, and what each asked of the site when that is known."""
    print("\n== summary")
    print(f"{'stage':<34} {'executor':<18} {'state':<10} {'wall time':>9}  requests")
    for r in reports:
        if r.hits is None:
            requests = "-"
        else:
            requests = f"{sum(r.hits.values()):>4}"
            if sum(r.hits.values()) > 1:
                requests += f" (at most {r.max_concurrent} at once)"
        title = f"{r.number} {r.title}"
        print(f"{title:<34} {r.executor:<18} {r.state.name:<10} {r.seconds:>7.2f} s  {requests}")
    sequential, parallel = reports[1].seconds, reports[2].seconds
    print(
        f"Three requests at a time (stage 3) took {parallel:.2f} s, one at a time (stage 2) "
        f"{sequential:.2f} s: {sequential / parallel:.1f}x the speed."
    )


def main(url: str | None = None, db: str | None = None) -> int:
    """Run the tutorial and print what it found; 0 when every stage completed.

    `url` is the site's home page; None serves the bundled offline site for the
    run. `db` is the SQLite file to store into; None uses a temporary one.
    """
    with tempfile.TemporaryDirectory(prefix="xfiles-") as scratch:
        database = db or str(Path(scratch) / "xfiles_db.sqlite")
        started = time.perf_counter()
        if url is None:
            with offline_site() as server:
                episodes = len(server.site.episodes)
                print(f"The bundled transcript site: {episodes} episodes at {server.url}")
                _, reports = run_stages(server.url, database, server)
        else:
            _, reports = run_stages(url, database)

        print_summary(reports)
        print("\n== SELECT EPISODE, CHARACTER, TEXT FROM XFILES WHERE TEXT LIKE '%programming%'")
        for row in programming_mentions(database):
            print(f"  {row}")
        print(f"\ndone in {time.perf_counter() - started:.1f} s")
    if db:
        print(f"The database is {db}: sqlite3 {db}")
    store = get_store()
    if store.recording:
        print(f"Every run above is recorded in {store.where} (HEADRACE_HOME={home()}):")
        print(f"list them with `{runs_ls_command()}`.")
    return 0 if all(r.state.is_successful() for r in reports) else 1


def runs_ls_command() -> str:
    """`headrace runs ls` as a fresh shell runs it: the command of this interpreter's
    environment (`.venv/bin/headrace` from the checkout), reading this run's history."""
    command = Path(sys.executable).parent / "headrace"
    if not command.exists():
        command = Path(shutil.which("headrace") or "headrace")
    elif command.is_relative_to(Path.cwd()):
        command = command.relative_to(Path.cwd())
    where = [
        f"{name}={shlex.quote(os.environ[name])} "
        for name in ("HEADRACE_HOME", "HEADRACE_DATABASE_URL")
        if os.environ.get(name)
    ]
    return f"{''.join(where)}{shlex.quote(str(command))} runs ls"


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.xfiles",
        description="Scrape the X-Files transcripts into SQLite, stage by stage.",
    )
    parser.add_argument("--url", help="a real site's home page (default: the bundled site)")
    parser.add_argument("--db", help="the SQLite file to store into (default: a temporary one)")
    args = parser.parse_args(argv)
    return main(url=args.url, db=args.db)


if __name__ == "__main__":
    sys.exit(cli())
