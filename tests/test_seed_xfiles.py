"""Acceptance: the X-Files tutorial (seeds 000 and 001) as headrace graph flows.

The seeds' code is translated to headrace (`outer_space.result[dialogue]` ->
`outer_space[dialogue]`, `state.result[1]` -> `state.result()[1]`,
`scraped_state.result` -> `scraped_state.task_states`, `Success` ->
`Completed`, mapped results are `Mapped` states with `map_states`) and run
against a real HTTP server on 127.0.0.1 (`xfiles_site`), which counts the
requests per page and the requests it served at once. The seed builds SQL by
string formatting; here every insert uses `?` placeholders.
"""

from __future__ import annotations

import sqlite3
import sys
import urllib.error
import urllib.request
from collections import Counter
from contextlib import closing
from types import SimpleNamespace

import cloudpickle
import pytest
from bs4 import BeautifulSoup

from headrace import Flow, Parameter, Task, task, unmapped
from headrace.errors import ResultReleasedError
from headrace.executors import DaskExecutor, LocalExecutor, ProcessExecutor, ThreadExecutor
from headrace.states import MappedState
from xfiles_site import (
    BROKEN_HREF,
    BROKEN_POSITION,
    EPISODES,
    LONE_GUNMEN,
    LONE_GUNMEN_PROGRAMMING_ROW,
    PROGRAMMING_ROWS,
    XFilesSite,
)

# Worker processes cannot import this module by name: send its tasks by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# -- the tutorial's tasks, translated ---------------------------------------------------------


@task(tags=["web"])
def retrieve_url(url):
    """Given a URL (string), retrieves html and returns the html as a string."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode(response.headers.get_content_charset() or "utf-8")
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{url} could not be retrieved.") from exc


@task
def scrape_dialogue(episode_html):
    """Given an episode page, returns (title, [(character, text)]).

    Unlike the seed, quotes are not doubled: the database gets parameters, not SQL text.
    """
    episode = BeautifulSoup(episode_html, "html.parser")
    title = episode.title.text.rstrip(" *")
    convos = episode.find_all("b") or episode.find_all("span", {"class": "char"})
    dialogue = []
    for item in convos:
        who = item.text.rstrip(": ").rstrip(" *")
        what = str(item.next_sibling).strip().rstrip(" *")
        dialogue.append((who, what))
    return (title, dialogue)


@task
def create_episode_list(base_url, main_html, bypass):
    """Given the main page html, creates a list of episode URLs ([base_url] when bypassing)."""
    if bypass:
        return [base_url]
    main_page = BeautifulSoup(main_html, "html.parser")
    episodes = []
    for link in main_page.find_all("a"):
        url = link.get("href")
        if "transcrp/scrp" in (url or ""):
            episodes.append(base_url + url)
    return episodes


CREATE_TABLE = "CREATE TABLE IF NOT EXISTS XFILES (EPISODE TEXT, CHARACTER TEXT, TEXT TEXT)"
INSERT_ROW = "INSERT INTO XFILES (EPISODE, CHARACTER, TEXT) VALUES (?, ?, ?)"


@task(tags=["db"])
def create_db(db_file):
    with closing(sqlite3.connect(db_file)) as conn, conn:
        conn.execute(CREATE_TABLE)


@task(tags=["db"])
def insert_episode(db_file, episode):
    title, dialogue = episode
    with closing(sqlite3.connect(db_file)) as conn, conn:
        conn.executemany(INSERT_ROW, [(title, who, what) for who, what in dialogue])


# Seed 001's versions: the episode becomes rows for a parameterised insert.
@task
def create_episode_script(episode):
    title, dialogue = episode
    return [(title, who, what) for who, what in dialogue]


@task(tags=["db"])
def insert_rows(db, rows):
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany(INSERT_ROW, rows)


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def site():
    with XFilesSite() as s:
        yield s


def build_scrape_flow():
    """Seed 000's "Scaling to all episodes" flow; returns (flow, its nodes by variable name)."""
    with Flow("xfiles") as flow:
        url = Parameter("url")
        bypass = Parameter("bypass", default=False, required=False)
        home_page = retrieve_url(url)
        episodes = create_episode_list(url, home_page, bypass=bypass)
        episode = retrieve_url.map(episodes)
        dialogue = scrape_dialogue.map(episode)
    return flow, SimpleNamespace(
        url=url,
        bypass=bypass,
        home_page=home_page,
        episodes=episodes,
        episode=episode,
        dialogue=dialogue,
    )


def extend_with_db(flow, n):
    """Seed 000's "Extend flow to write to a database" block, on an existing flow."""
    with flow:
        db_file = Parameter("db_file")
        db = create_db(db_file)
        final = insert_episode.map(
            episode=n.dialogue, db_file=unmapped(db_file), upstream_tasks=[unmapped(db)]
        )
    n.db_file, n.db, n.final = db_file, db, final


def extend_with_script(flow, n, db_path):
    """Seed 001's database block: a fixed db, a mapped script step, a mapped insert."""
    with flow:
        db = create_db(str(db_path))
        ep_script = create_episode_script.map(episode=n.dialogue)
        final = insert_rows.map(
            rows=ep_script, db=unmapped(str(db_path)), upstream_tasks=[unmapped(db)]
        )
    n.db, n.ep_script, n.final = db, ep_script, final


def query(db_path, sql, params=()):
    with closing(sqlite3.connect(db_path)) as conn:
        return conn.execute(sql, params).fetchall()


def programming_mentions(db_path):
    return query(
        db_path, "SELECT EPISODE, CHARACTER, TEXT FROM XFILES WHERE TEXT LIKE ?", ("%programming%",)
    )


def all_rows(episodes):
    return sorted((ep.title, who, what) for ep in episodes for who, what in ep.lines)


def assert_scraped_every_episode(dialogue_state):
    """One Completed child per index link, in index order, each with the page's dialogue."""
    assert isinstance(dialogue_state, MappedState)
    assert len(dialogue_state.map_states) == len(EPISODES)
    for child, ep in zip(dialogue_state.map_states, EPISODES, strict=True):
        assert child.name == "Completed", child
        title, dialogue = child.result()
        assert title == ep.title
        assert dialogue == list(ep.lines)


# -- setting up the flow for a single episode -----------------------------------------------------


def test_single_episode_first_five_spoken_lines(site):
    with Flow("xfiles") as flow:
        url = Parameter("url")
        episode = retrieve_url(url)
        dialogue = scrape_dialogue(episode)

    ep = EPISODES[3]
    outer_space = flow.run(parameters={"url": site.url(ep.href)}, return_tasks=[dialogue])

    state = outer_space[dialogue]
    assert state.name == "Completed"
    first_five_spoken_lines = state.result()[1][:5]
    assert first_five_spoken_lines == list(ep.lines[:5])
    printed = "".join(f"{speaker}: {words}\n" for speaker, words in first_five_spoken_lines)
    assert printed.splitlines()[0] == f"{ep.lines[0][0]}: {ep.lines[0][1]}"
    assert site.hits == Counter({ep.path: 1})


def test_single_episode_with_span_markup_and_special_characters(site):
    """A page with <span class="char"> speakers, apostrophes, quotes, & and non-ASCII."""
    with Flow("xfiles") as flow:
        url = Parameter("url")
        dialogue = scrape_dialogue(retrieve_url(url))
    ep = next(e for e in EPISODES if e.span_markup)
    text = "".join(what for _, what in ep.lines)
    assert "'" in text and any(ord(c) > 127 for c in text)  # the page really is awkward
    assert "<b>" not in site.pages[ep.path].decode()

    state = flow.run(parameters={"url": site.url(ep.href)})

    assert state[dialogue].result() == (ep.title, list(ep.lines))


# -- scaling to all episodes ------------------------------------------------------------------------


def test_all_episodes_mapped_one_child_each_and_each_page_fetched_once(site):
    flow, n = build_scrape_flow()

    scraped_state = flow.run(parameters={"url": site.base_url}, return_tasks=[n.dialogue])

    assert scraped_state.name == "Completed"
    assert_scraped_every_episode(scraped_state[n.dialogue])
    assert len(scraped_state[n.episode].map_states) == len(site.hrefs)
    assert site.hits["/"] == 1
    assert site.episode_hits() == {ep.path: 1 for ep in EPISODES}
    assert site.hits[LONE_GUNMEN.path] == 0


def test_return_tasks_flow_tasks_and_printing_the_first_five_map_states(site):
    flow, n = build_scrape_flow()

    scraped_state = flow.run(
        parameters={"url": site.base_url},
        return_tasks=flow.tasks,
        executor=ThreadExecutor(4),
        throttle={"web": 3},
    )

    dialogue_state = scraped_state[n.dialogue]
    printed = "\n".join(f"{s.result()[0]}: {s}" for s in dialogue_state.map_states[:5])
    lines = printed.splitlines()
    assert len(lines) == 5
    for line, ep in zip(lines, EPISODES[:5], strict=True):
        assert line.startswith(f"{ep.title}: Completed(message='Task run succeeded.'"), line
    # return_tasks=flow.tasks keeps intermediate results too: the raw pages and the home page.
    pages = scraped_state[n.episode].result()
    assert [BeautifulSoup(p, "html.parser").title.text for p in pages] == [
        f"{ep.title} *" for ep in EPISODES
    ]
    assert EPISODES[0].href in scraped_state[n.home_page].result()


def test_without_return_tasks_the_raw_pages_are_released(site):
    """The contrast to the test above: what return_tasks=flow.tasks keeps in memory. A
    released page is read again from where it was persisted; unpersisted, it is gone."""
    flow, n = build_scrape_flow()

    scraped_state = flow.run(parameters={"url": site.base_url})

    assert_scraped_every_episode(scraped_state[n.dialogue])  # terminal: kept
    first_page = scraped_state[n.episode].map_states[0]
    assert first_page.is_released()
    assert BeautifulSoup(first_page.result(), "html.parser").title.text == f"{EPISODES[0].title} *"
    flow.persist_result = False
    unpersisted = flow.run(parameters={"url": site.base_url})
    with pytest.raises(ResultReleasedError):
        unpersisted[n.episode].map_states[0].result()


PARALLEL_EXECUTORS = {
    "threads": lambda: ThreadExecutor(8),
    "processes": lambda: ProcessExecutor(4),
    "dask": lambda: DaskExecutor(cluster_kwargs={"n_workers": 4}),
}


@pytest.mark.parametrize("make_executor", PARALLEL_EXECUTORS.values(), ids=PARALLEL_EXECUTORS)
def test_parallel_scrape_is_throttled_to_three_connections(make_executor):
    flow, n = build_scrape_flow()
    with XFilesSite(delay=0.05) as site:
        scraped_state = flow.run(
            parameters={"url": site.base_url},
            return_tasks=[n.dialogue],
            executor=make_executor(),
            throttle={"web": 3},
        )

    assert scraped_state.name == "Completed"
    assert_scraped_every_episode(scraped_state[n.dialogue])
    assert site.episode_hits() == {ep.path: 1 for ep in EPISODES}
    assert 1 < site.max_concurrent <= 3


def test_parallel_scrape_without_throttle_opens_more_than_three_connections():
    """The contrast to the test above: the cap of 3 comes from the throttle, not the executor."""
    flow, n = build_scrape_flow()
    with XFilesSite(delay=0.05) as site:
        scraped_state = flow.run(parameters={"url": site.base_url}, executor=ThreadExecutor(8))

    assert_scraped_every_episode(scraped_state[n.dialogue])
    assert site.max_concurrent > 3


# -- extending the flow to write to a database ----------------------------------------------------


def test_seed_000_db_extension_reuses_scraped_states_from_start_tasks(site, tmp_path):
    flow, n = build_scrape_flow()
    scraped_state = flow.run(parameters={"url": site.base_url}, return_tasks=[n.dialogue])
    assert scraped_state.name == "Completed"
    hits_after_scrape = Counter(site.hits)

    extend_with_db(flow, n)
    db_path = tmp_path / "xfiles_db.sqlite"
    state = flow.run(
        parameters={"url": site.base_url, "db_file": str(db_path)},
        executor=ThreadExecutor(4),
        throttle={"web": 3, "db": 10},
        task_states=scraped_state.task_states,
        start_tasks=[n.final, n.db, n.db_file],
    )

    assert state.name == "Completed", state.message
    assert site.hits == hits_after_scrape  # nothing fetched again
    assert state[n.db].name == "Completed"
    assert isinstance(state[n.final], MappedState)
    assert [s.name for s in state[n.final].map_states] == ["Completed"] * len(EPISODES)
    assert sorted(query(db_path, "SELECT * FROM XFILES")) == all_rows(EPISODES)
    assert sorted(programming_mentions(db_path)) == sorted(PROGRAMMING_ROWS)
    assert len(PROGRAMMING_ROWS) >= 2


def test_seed_001_db_extension_reuses_states_without_start_tasks(site, tmp_path):
    flow, n = build_scrape_flow()
    scraped_state = flow.run(parameters={"url": site.base_url})
    hits_after_scrape = Counter(site.hits)

    db_path = tmp_path / "xfiles_db.sqlite"
    extend_with_script(flow, n, db_path)
    state = flow.run(
        parameters={"url": site.base_url},
        task_states=scraped_state.task_states,
        return_tasks=[n.ep_script],
    )

    assert state.name == "Completed", state.message
    assert site.hits == hits_after_scrape  # the home page and every episode: not refetched
    assert state[n.ep_script].result()[0] == [
        (EPISODES[0].title, who, what) for who, what in EPISODES[0].lines
    ]
    assert len(state[n.final].map_states) == len(EPISODES)
    assert sorted(query(db_path, "SELECT * FROM XFILES")) == all_rows(EPISODES)
    assert sorted(programming_mentions(db_path)) == sorted(PROGRAMMING_ROWS)


class SQLiteStatement(Task):
    """Seed 001's `SQLiteScript`, parameterised: `db` and `statement` given at construction
    are defaults; `rows` (parameters for executemany) come at run time."""

    def __init__(self, db=None, statement=None, **options):
        self.db = db
        self.statement = statement
        super().__init__(**options)

    def run(self, db=None, statement=None, rows=None):
        with closing(sqlite3.connect(db)) as conn, conn:
            if rows is None:
                conn.execute(statement)
            else:
                conn.executemany(statement, rows)


def test_seed_001_class_tasks_with_construction_defaults_can_be_mapped(site, tmp_path):
    db_path = str(tmp_path / "xfiles_db.sqlite")
    create_table = SQLiteStatement(name="Create DB", db=db_path, statement=CREATE_TABLE)
    insert = SQLiteStatement(name="Insert Episode", db=db_path, statement=INSERT_ROW)
    flow, n = build_scrape_flow()
    with flow:
        db = create_table()
        ep_script = create_episode_script.map(episode=n.dialogue)
        final = insert.map(rows=ep_script, upstream_tasks=[unmapped(db)])

    state = flow.run(parameters={"url": site.base_url})

    assert state.name == "Completed", state.message
    assert len(state[final].map_states) == len(EPISODES)
    assert sorted(programming_mentions(db_path)) == sorted(PROGRAMMING_ROWS)


# -- reusability ------------------------------------------------------------------------------------


def test_seed_000_scrape_a_single_episode_with_bypass_and_start_tasks(site):
    flow, n = build_scrape_flow()
    ep = EPISODES[8]

    outer_space = flow.run(
        parameters={"url": site.url(ep.href), "bypass": True},
        start_tasks=[n.bypass, n.episodes, n.url],
        return_tasks=[n.dialogue],
    )

    assert outer_space.name == "Completed", outer_space.message
    assert outer_space[n.home_page].name == "NotRun"
    [child] = outer_space[n.dialogue].map_states
    assert child.result() == (ep.title, list(ep.lines))
    assert site.hits == Counter({ep.path: 1})


def test_seed_000_lone_gunmen_reuse_skips_the_home_page(site, tmp_path):
    flow, n = build_scrape_flow()
    extend_with_db(flow, n)
    db_path = tmp_path / "xfiles_db.sqlite"
    first = flow.run(parameters={"url": site.base_url, "db_file": str(db_path)})
    assert first.name == "Completed", first.message
    assert sorted(programming_mentions(db_path)) == sorted(PROGRAMMING_ROWS)
    hits_before = Counter(site.hits)

    final = flow.run(
        parameters={"url": site.url(LONE_GUNMEN.href), "bypass": True, "db_file": str(db_path)},
        start_tasks=[n.bypass, n.db_file, n.episodes, n.url],
    )

    assert final.name == "Completed", final.message
    assert final[n.home_page].name == "NotRun"
    assert site.hits["/"] == hits_before["/"] == 1
    assert site.hits[LONE_GUNMEN.path] == 1
    assert site.hits - Counter({LONE_GUNMEN.path: 1}) == hits_before
    assert [s.name for s in final[n.final].map_states] == ["Completed"]
    assert sorted(programming_mentions(db_path)) == sorted(
        [*PROGRAMMING_ROWS, LONE_GUNMEN_PROGRAMMING_ROW]
    )


EVERY_EXECUTOR = {"local": LocalExecutor, **PARALLEL_EXECUTORS}


@pytest.mark.parametrize("make_executor", EVERY_EXECUTOR.values(), ids=EVERY_EXECUTOR)
def test_seed_000_lone_gunmen_on_a_fresh_database_creates_its_table(site, tmp_path, make_executor):
    """The `db_file` parameter in start_tasks starts `create_db`, which is below it and
    above no start task; the home page, which feeds `episodes`, stays above the start."""
    flow, n = build_scrape_flow()
    extend_with_db(flow, n)
    db_path = tmp_path / "fresh.sqlite"

    final = flow.run(
        parameters={"url": site.url(LONE_GUNMEN.href), "bypass": True, "db_file": str(db_path)},
        start_tasks=[n.bypass, n.db_file, n.episodes, n.url],
        executor=make_executor(),
    )

    assert final.name == "Completed", final.message
    assert final[n.db].name == "Completed"
    assert final[n.home_page].name == "NotRun"
    assert site.hits == Counter({LONE_GUNMEN.path: 1})
    assert sorted(query(db_path, "SELECT * FROM XFILES")) == all_rows([LONE_GUNMEN])


def test_seed_001_lone_gunmen_reuse_with_bypass_only(site, tmp_path):
    """Seed 001 passes only `bypass`: the home-page task then fetches the given URL itself,
    so the Lone Gunmen page is fetched twice and the site's home page never."""
    flow, n = build_scrape_flow()
    db_path = tmp_path / "xfiles_db.sqlite"
    extend_with_script(flow, n, db_path)

    final = flow.run(parameters={"url": site.url(LONE_GUNMEN.href), "bypass": True})

    assert final.name == "Completed", final.message
    assert final[n.home_page].name == "Completed"
    assert site.hits == Counter({LONE_GUNMEN.path: 2})
    assert sorted(query(db_path, "SELECT * FROM XFILES")) == all_rows([LONE_GUNMEN])
    assert programming_mentions(db_path) == [LONE_GUNMEN_PROGRAMMING_ROW]


# -- a page that does not exist -------------------------------------------------------------------


def test_a_missing_page_fails_only_its_own_children():
    flow, n = build_scrape_flow()
    with XFilesSite(broken=True) as site:
        state = flow.run(parameters={"url": site.base_url})
        broken_url = site.url(BROKEN_HREF)

    assert state.name == "Failed"
    assert state.is_failed()
    fetched = state[n.episode].map_states
    scraped = state[n.dialogue].map_states
    assert len(fetched) == len(scraped) == len(EPISODES) + 1
    assert state[n.episode].is_failed()
    assert state[n.dialogue].is_failed()

    bad = fetched[BROKEN_POSITION]
    assert bad.name == "Failed"
    assert broken_url in bad.message
    assert isinstance(bad.exception, ValueError)
    assert str(bad.exception) == f"{broken_url} could not be retrieved."
    assert scraped[BROKEN_POSITION].name == "TriggerFailed"

    good = [i for i in range(len(fetched)) if i != BROKEN_POSITION]
    assert all(fetched[i].name == "Completed" for i in good)
    assert [scraped[i].name for i in good] == ["Completed"] * len(EPISODES)
    assert [scraped[i].result()[0] for i in good] == [ep.title for ep in EPISODES]
    assert site.hits["/" + BROKEN_HREF] == 1
    assert site.episode_hits() == {ep.path: 1 for ep in EPISODES}
