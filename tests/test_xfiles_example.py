"""The X-Files example (examples/xfiles, examples/demo.py) and its tutorial (docs/tutorial.md).

The example's five stages run once, in order, against its own generated site served on
127.0.0.1 (70 episodes: enough to hold stage 1's page, scrp320), with the executors they
name (LocalExecutor, ThreadExecutor(8)); the site's request counts, reset before each stage,
say what each stage fetched and how many requests overlapped. The tests then check each
stage's outcome, the site generator, the command lines (`make demo`'s script, `--url`, the
site server), and that the tutorial's code is the example's code.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
# The example is a package under examples/, not installed: import it from the checkout.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.xfiles import flow as example  # noqa: E402
from examples.xfiles.site import (  # noqa: E402
    LONE_GUNMEN_HREF,
    LONE_GUNMEN_LINE,
    SiteServer,
    make_site,
    offline_site,
)

from headrace.executors import ProcessExecutor  # noqa: E402
from headrace.states import MappedState  # noqa: E402
from headrace.store import open_reader  # noqa: E402
from markdown_blocks import python_blocks  # noqa: E402

EPISODES = 70  # the fewest that include transcrp/scrp320.htm, which stage 1 scrapes
DELAY = 0.02
TUTORIAL = ROOT / "docs" / "tutorial.md"
FLOW_SOURCE = ROOT / "examples" / "xfiles" / "flow.py"
DEMO = ROOT / "examples" / "demo.py"
BACKSTOP = 120  # seconds: a hung subprocess fails its test instead of the whole run


def stored_rows(db):
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT EPISODE, LINE, CHARACTER, TEXT FROM XFILES").fetchall()


def expected_rows(episodes):
    return sorted(
        (ep.title, n, who, what) for ep in episodes for n, (who, what) in enumerate(ep.lines, 1)
    )


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    """Every stage, run once in order; what each printed, returned and asked of the site."""
    database = str(tmp_path_factory.mktemp("xfiles") / "xfiles_db.sqlite")
    printed = io.StringIO()
    with offline_site(episodes=EPISODES, delay=DELAY) as server:
        with contextlib.redirect_stdout(printed):
            xf, reports = example.run_stages(server.url, database, server)
        yield {
            "site": server.site,
            "server": server,
            "url": server.url,
            "database": database,
            "xf": xf,
            "reports": {r.number: r for r in reports},
            "printed": printed.getvalue(),
        }


# -- stage by stage ---------------------------------------------------------------------------


def test_every_stage_completes(tutorial):
    reports = tutorial["reports"]
    assert sorted(reports) == [1, 2, 3, 4, 5]
    assert {n: r.state.name for n, r in reports.items()} == dict.fromkeys(reports, "Completed")


def test_stage_1_scrapes_one_episode_and_prints_its_first_five_lines(tutorial):
    site, report = tutorial["site"], tutorial["reports"][1]
    ep = next(e for e in site.episodes if e.href == "transcrp/scrp320.htm")

    [dialogue] = [node for node in report.state.task_states if node.name == "scrape_dialogue"]
    assert report.state[dialogue].result() == (ep.title, list(ep.lines))
    assert report.hits == collections.Counter({"/transcrp/scrp320.htm": 1})
    stage_1_output = tutorial["printed"].split("== stage 2")[0]
    for who, what in ep.lines[:5]:
        assert f"{who}: {what}\n" in stage_1_output


def assert_every_episode_scraped(state, xf, site):
    dialogue = state[xf.dialogue]
    assert isinstance(dialogue, MappedState)
    assert [s.name for s in dialogue.map_states] == ["Completed"] * len(site.episodes)
    assert dialogue.result() == [(ep.title, list(ep.lines)) for ep in site.episodes]


def test_stage_2_scrapes_every_episode_one_request_at_a_time(tutorial):
    site, xf, report = tutorial["site"], tutorial["xf"], tutorial["reports"][2]

    assert_every_episode_scraped(report.state, xf, site)
    expected = collections.Counter({"/": 1, **{"/" + ep.href: 1 for ep in site.episodes}})
    assert report.hits == expected  # the home page and each episode, once
    assert report.max_concurrent == 1  # LocalExecutor: never two at once


def test_stage_3_scrapes_in_parallel_within_the_throttle(tutorial):
    site, xf, report = tutorial["site"], tutorial["xf"], tutorial["reports"][3]

    assert_every_episode_scraped(report.state, xf, site)
    assert report.hits == tutorial["reports"][2].hits
    assert 1 < report.max_concurrent <= 3


def test_stage_4_stores_every_line_without_fetching_a_page(tutorial):
    site, xf, report = tutorial["site"], tutorial["xf"], tutorial["reports"][4]
    state = report.state

    assert report.hits == collections.Counter()  # the scraped states were reused
    assert state[xf.db].name == "Completed"
    assert [s.name for s in state[xf.final].map_states] == ["Completed"] * len(site.episodes)
    assert state[xf.home_page].name == "Completed"  # given, not run
    # After stage 5 the table also holds the Lone Gunmen episode; stage 4 stored the rest.
    rows = [r for r in stored_rows(tutorial["database"]) if r[0] != site.lone_gunmen.title]
    assert len(rows) == site.line_count
    assert sorted(rows) == expected_rows(site.episodes)


def test_stage_5_adds_the_lone_gunmen_without_the_home_page(tutorial):
    site, xf, report = tutorial["site"], tutorial["xf"], tutorial["reports"][5]
    state = report.state

    assert report.hits == collections.Counter({"/" + LONE_GUNMEN_HREF: 1})
    assert state[xf.home_page].name == "NotRun"
    assert [s.name for s in state[xf.final].map_states] == ["Completed"]
    rows = stored_rows(tutorial["database"])
    assert len(rows) == site.line_count + len(site.lone_gunmen.lines)
    assert (site.lone_gunmen.title, 3, *LONE_GUNMEN_LINE) in rows


def test_the_programming_query_finds_the_planted_lines_and_the_lone_gunmen(tutorial):
    site = tutorial["site"]

    mentions = example.programming_mentions(tutorial["database"])

    assert sorted(mentions) == sorted(site.rows_mentioning("programming", lone_gunmen=True))
    assert (site.lone_gunmen.title, *LONE_GUNMEN_LINE) in mentions
    assert len(mentions) >= 3


def test_storing_again_replaces_rather_than_duplicates(tutorial):
    xf, reports = tutorial["xf"], tutorial["reports"]
    before = sorted(stored_rows(tutorial["database"]))
    tutorial["server"].reset_counts()

    with contextlib.redirect_stdout(io.StringIO()):
        again = example.stage_4_store(xf, tutorial["url"], tutorial["database"], reports[3].state)

    assert again.name == "Completed"
    assert tutorial["server"].requests == 0
    assert sorted(stored_rows(tutorial["database"])) == before


def test_the_flow_runs_unchanged_on_worker_processes(tutorial):
    """The example's tasks (a FetchURL, @task functions) travel to other processes."""
    site, server = tutorial["site"], tutorial["server"]
    xf = example.build_flow()
    server.reset_counts()

    state = xf.flow.run(
        parameters={"url": tutorial["url"]},
        executor=ProcessExecutor(2),
        throttle={"web": 3},
    )

    assert state.name == "Completed", state.message
    assert_every_episode_scraped(state, xf, site)
    assert server.requests == len(site.episodes) + 1
    assert server.max_concurrent <= 3


# -- the command lines --------------------------------------------------------------------------


def run_python(args, tmp_path, **kwargs):
    env = {**os.environ, "HEADRACE_HOME": str(tmp_path / "home")}
    env.pop("HEADRACE_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BACKSTOP,
        **kwargs,
    )


def summary_lines(stdout):
    summary = stdout.split("== summary\n", 1)[1]
    return {int(line.split()[0]): line for line in summary.splitlines() if line[:1].isdigit()}


def test_demo_runs_the_tutorial_and_prints_timings_and_the_programming_rows(tmp_path):
    site = make_site()  # what the demo serves

    done = run_python([str(DEMO)], tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    lines = summary_lines(out)
    assert sorted(lines) == [1, 2, 3, 4, 5]
    for line in lines.values():
        assert "Completed" in line, line
        assert re.search(r"\d+\.\d\d s", line), line
    assert re.search(rf"\s{len(site.episodes) + 1} \(at most 1 at once\)", lines[2])
    assert re.search(rf"\s{len(site.episodes) + 1} \(at most [23] at once\)", lines[3])
    assert re.search(r"\s0$", lines[4]), lines[4]
    assert "x the speed" in out
    query_output = out.split("WHERE TEXT LIKE '%programming%'\n", 1)[1]
    for row in site.rows_mentioning("programming", lone_gunmen=True):
        assert f"  {row}\n" in query_output
    assert "It's a pretty neat bit of programming." in query_output
    assert "headrace runs ls" in out
    assert f"HEADRACE_HOME={tmp_path / 'home'}" in out
    # The closing hint is a command that works as printed, from a fresh shell.
    (hint,) = re.findall(r"list them with `([^`]+)`", out)
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    listed = subprocess.run(
        hint, shell=True, cwd=ROOT, env=fresh, capture_output=True, text=True, timeout=BACKSTOP
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("xfiles") == 5, listed.stdout
    # Every stage's run is in the history the output points to.
    history = open_reader(f"sqlite:///{tmp_path / 'home' / 'headrace.db'}")
    runs = history.flow_runs(flow_name="xfiles")
    assert [r.state_name for r in runs] == ["Completed"] * 5


def test_url_points_the_example_at_another_site_and_keeps_the_database(tmp_path):
    database = tmp_path / "kept.sqlite"
    with offline_site(episodes=EPISODES, delay=0) as elsewhere:
        done = run_python(
            ["-m", "examples.xfiles", "--url", elsewhere.url, "--db", str(database)], tmp_path
        )
        site, hits = elsewhere.site, collections.Counter(elsewhere.hits)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "bundled" not in done.stdout  # no local site was started
    assert {n: line.rstrip().endswith("-") for n, line in summary_lines(done.stdout).items()} == {
        n: True for n in range(1, 6)
    }
    # Stages 1, 2, 3 and 5 fetched from the given site; stage 4 fetched nothing.
    assert hits["/"] == 2
    assert hits["/transcrp/scrp320.htm"] == 3
    assert hits["/" + LONE_GUNMEN_HREF] == 1
    assert sorted(stored_rows(database)) == expected_rows([*site.episodes, site.lone_gunmen])
    assert f"The database is {database}" in done.stdout


def test_the_site_serves_from_the_command_line_until_interrupted(tmp_path):
    directory = tmp_path / "site"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["--port", "0", "--episodes", "3", "--dir", str(directory), "--delay", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.xfiles.site", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        serving = process.stdout.readline()
        url = re.search(r"serving (http://127\.0\.0\.1:\d+/)", serving)
        assert url, (first, serving)
        with urllib.request.urlopen(url.group(1), timeout=10) as answer:
            index = answer.read().decode()
        assert index.count('HREF="transcrp/scrp') == 3
        assert (directory / "transcrp" / "tlg105.htm").exists()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=BACKSTOP)
    assert process.returncode == 0, process.stderr.read()
    assert "3 episodes" in first


# -- the site -----------------------------------------------------------------------------------


def test_the_site_is_the_same_for_a_seed_and_differs_between_seeds():
    generate = make_site.__wrapped__  # past the cache: really generate twice
    assert generate(7, 30).pages() == generate(7, 30).pages()
    assert generate(7, 30).pages() != generate(8, 30).pages()


def test_the_written_site_has_an_index_of_relative_links_and_an_unlinked_lone_gunmen(tmp_path):
    site = make_site()
    site.write(tmp_path)

    index = BeautifulSoup((tmp_path / "index.htm").read_text(encoding="utf-8"), "html.parser")
    hrefs = [a.get("href") for a in index.find_all("a")]
    episode_links = [h for h in hrefs if "transcrp/scrp" in (h or "")]
    assert episode_links == [ep.href for ep in site.episodes]
    assert len(episode_links) == 200
    assert all(re.fullmatch(r"transcrp/scrp\d{3}\.htm", h) for h in episode_links)
    assert len(hrefs) > len(episode_links)  # links the scraper must skip
    assert LONE_GUNMEN_HREF not in hrefs
    assert LONE_GUNMEN_HREF in (tmp_path / "scripts.htm").read_text()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.htm"))
    assert written == sorted(
        ["index.htm", "scripts.htm", LONE_GUNMEN_HREF, *(ep.href for ep in site.episodes)]
    )


def test_the_pages_carry_the_markup_and_the_awkward_text_the_tutorial_is_about():
    site = make_site()
    pages = site.pages()
    span_pages = [ep for ep in site.episodes if ep.span_markup]
    bold_pages = [ep for ep in site.episodes if not ep.span_markup]
    assert span_pages and bold_pages
    assert all("<b>" not in pages[ep.href] for ep in span_pages)
    assert all('<span class="char">' not in pages[ep.href] for ep in bold_pages)
    assert all(f"{ep.title} *</TITLE>" in pages[ep.href] for ep in site.episodes)
    # Speeches are wrapped over several source lines, as on a hand-edited page.
    assert any(re.search(r"<b>[^<]+</b> [^<]*\n[^<]*<BR>", pages[ep.href]) for ep in bold_pages)
    words = [what for ep in site.episodes for _, what in ep.lines]
    assert any("'" in w for w in words) and any('"' in w for w in words)
    assert any(any(ord(c) > 127 for c in w) for w in words)
    assert any("'" in ep.title for ep in site.episodes)
    assert any("'" in who for ep in site.episodes for who, _ in ep.lines)
    assert len({ep.title for ep in site.episodes}) == len(site.episodes)
    planted = site.rows_mentioning("programming")
    assert len(planted) == 3 and len({row[0] for row in planted}) == 3


def test_the_scraper_reads_every_page_of_the_default_site_exactly():
    site = make_site()
    pages = site.pages()
    for ep in [*site.episodes, site.lone_gunmen]:
        assert example.scrape_dialogue(pages[ep.href]) == (ep.title, list(ep.lines)), ep.href


def test_the_server_counts_requests_and_declares_utf8(tmp_path):
    site = make_site(seed=3, episodes=5)
    site.write(tmp_path)
    with SiteServer(tmp_path, delay=0, site=site) as server:
        with urllib.request.urlopen(server.url + site.episodes[0].href) as answer:
            assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
            assert answer.read().decode("utf-8") == site.pages()[site.episodes[0].href]
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url + "transcrp/scrp999.htm")
        missing.value.close()
        assert missing.value.code == 404
        assert server.hits == collections.Counter(
            {"/" + site.episodes[0].href: 1, "/transcrp/scrp999.htm": 1}
        )
        assert server.requests == 2 and server.max_concurrent == 1
        server.reset_counts()
        assert server.requests == 0 and server.max_concurrent == 0
    with pytest.raises(RuntimeError, match="not being served"):
        server.url  # noqa: B018


# -- the tutorial is the example's code ------------------------------------------------------------


# (line, code) of each block; the comparison with the source ignores the trailing newline.
TUTORIAL_BLOCKS = [
    (line, code.rstrip("\n"))
    for _, line, code in python_blocks(TUTORIAL.read_text(encoding="utf-8"))
]


def appears_in_source(block, source_lines):
    """True when the block's lines are a run of the source's lines, shifted by one indent."""
    lines = block.splitlines()
    for indent in range(0, 13, 4):
        shifted = [(" " * indent + line) if line else "" for line in lines]
        n = len(shifted)
        if any(source_lines[i : i + n] == shifted for i in range(len(source_lines) - n + 1)):
            return True
    return False


def test_the_tutorial_shows_the_examples_code():
    text = TUTORIAL.read_text(encoding="utf-8")
    assert "examples/xfiles/flow.py" in text
    assert len(TUTORIAL_BLOCKS) >= 10
    # Every stage's code is shown.
    shown = "\n".join(code for _, code in TUTORIAL_BLOCKS)
    for needle in (
        "retrieve_url = FetchURL(",
        "def scrape_dialogue(",
        "def create_episode_list(",
        "dialogue = scrape_dialogue.map(episode)",
        'throttle={"web": 3}',
        "with flow:",
        "task_states=scraped_state.task_states",
        '"bypass": True',
        "def programming_mentions(",
    ):
        assert needle in shown, needle


@pytest.mark.parametrize(
    "code", [pytest.param(code, id=f"L{line}") for line, code in TUTORIAL_BLOCKS]
)
def test_every_tutorial_block_is_verbatim_in_the_example(code):
    source_lines = FLOW_SOURCE.read_text(encoding="utf-8").splitlines()
    assert appears_in_source(code, source_lines), (
        "this docs/tutorial.md block is not in examples/xfiles/flow.py (copy it from there):\n"
        + textwrap.indent(code, "    ")
    )


def test_the_verbatim_check_rejects_a_changed_block():
    source_lines = FLOW_SOURCE.read_text(encoding="utf-8").splitlines()
    assert appears_in_source('throttle={"web": 3},', source_lines)
    assert not appears_in_source('throttle={"web": 4},', source_lines)
    assert not appears_in_source('  throttle={"web": 3},', source_lines)  # a partial indent
