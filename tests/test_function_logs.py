"""Run logs of function flows: the console lines seed 004 shows, and the run logger.

The console handler writes to whatever `sys.stderr` is at the time, so `capsys`
reads the lines. The level is read from HEADRACE_LOGGING_LEVEL once per process,
so the level tests run a child Python (`run_child`, in log_helpers.py). That the
console level does not filter the history, and that a level that is not one is a
clear error, is tested in faults/test_logs.py.
"""

from __future__ import annotations

import re
import sys

import pytest

from headrace import flow, get_run_logger, task
from headrace.engine import logs
from headrace.engine.function_flow import QUIET_AFTER
from headrace.errors import ContextError
from headrace.executors import ThreadExecutor
from log_helpers import LEVEL_SCRIPT, run_child

# A console line starts with the time, milliseconds included.
TIME = r"^\d\d:\d\d:\d\d\.\d{3}"


def line(level: str, label: str, message: str) -> re.Pattern:
    """A compiled pattern for one whole console line; `label`/`message` are regexes."""
    # The level is padded to 7 characters, as in the seed's "INFO    |".
    return re.compile(rf"{TIME} \| {level:<7} \| {label} - {message}$", re.MULTILINE)


@pytest.fixture
def console():
    """headrace's console handler at INFO, whatever earlier tests or the environment set."""
    logs.configure()
    assert any(isinstance(h, logs._StderrHandler) for h in logs.ROOT.handlers), (
        "headrace's console handler is not installed: something else configured the "
        "'headrace' logger first"
    )
    level = logs.ROOT.level
    logs.ROOT.setLevel("INFO")
    yield
    logs.ROOT.setLevel(level)


@task
def add_one(x):
    return x + 1


@task
def boom():
    raise ValueError("boom")


# -- the lifecycle lines of seed 004 -----------------------------------------------------------


def test_the_lifecycle_lines_of_a_flow_with_a_task(console, capsys):
    @flow
    def my_add_one_flow():
        state = add_one(1, return_state=True)
        return state

    my_add_one_flow()
    err = capsys.readouterr().err
    name = my_add_one_flow.last_run.name
    expected = [
        line("INFO", r"headrace\.engine", f"Created flow run '{name}' for flow 'my-add-one-flow'"),
        # The regex of the issue, verbatim.
        re.compile(
            r"^\d\d:\d\d:\d\d\.\d{3} \| INFO    \| Flow run '[a-z]+-[a-z]+' - Created task run "
            r"'add_one-0' for task 'add_one'$",
            re.MULTILINE,
        ),
        line("INFO", r"Task run 'add_one-0'", re.escape("Finished in state Completed()")),
        # Prefect 2.1 printed Completed('All states completed.') here; a flow that returns
        # a State adopts it (as Prefect 2.6+ and 3 do), so the flow ends in the task's state.
        line("INFO", f"Flow run '{name}'", re.escape("Finished in state Completed()")),
    ]
    positions = []
    for pattern in expected:
        match = pattern.search(err)
        assert match, f"no line matching {pattern.pattern!r} in:\n{err}"
        positions.append(match.start())
    assert positions == sorted(positions), err
    assert len(err.splitlines()) == 4, err


def test_the_subflow_line_names_both_runs(console, capsys):
    @flow
    def my_favorite_function():
        return 42

    @flow
    def my_favorite_function_flow():
        return my_favorite_function(return_state=True)

    my_favorite_function_flow()
    err = capsys.readouterr().err
    parent, child = my_favorite_function_flow.last_run.name, my_favorite_function.last_run.name
    created = line(
        "INFO",
        f"Flow run '{parent}'",
        f"Created subflow run '{child}' for flow 'my-favorite-function'",
    )
    assert created.search(err), err
    assert line("INFO", f"Flow run '{child}'", r"Finished in state Completed\(.*\)").search(err)
    assert re.search(r"headrace\.engine - Created flow run", err)
    # Only the outermost run is announced by the engine; the subflow by its parent.
    assert err.count("headrace.engine - Created flow run") == 1


def test_a_flow_that_started_no_task_finishes_completed_without_message(console, capsys):
    # Seed 004: the subflows 'arrogant-cricket' and 'beryl-dingo' end "Completed()", their
    # parents, which started runs, "Completed('All states completed.')".
    @flow
    def common_flow(config: dict):
        return 42

    @flow
    def main_flow():
        common_flow(config={})

    main_flow()
    err = capsys.readouterr().err
    child, parent = common_flow.last_run.name, main_flow.last_run.name
    finished = "Finished in state Completed"
    assert line("INFO", f"Flow run '{child}'", re.escape(f"{finished}()")).search(err), err
    all_completed = re.escape(f"{finished}('All states completed.')")
    assert line("INFO", f"Flow run '{parent}'", all_completed).search(err), err


def test_a_failed_task_is_logged_at_error_with_its_state(console, capsys):
    @flow
    def lenient():
        return boom(return_state=True)

    lenient(return_state=True)
    err = capsys.readouterr().err
    assert line("ERROR", r"Task run 'boom-0'", "Encountered exception during execution:").search(
        err
    )
    assert line(
        "ERROR",
        r"Task run 'boom-0'",
        re.escape("Finished in state Failed('Task run encountered an exception ValueError: boom')"),
    ).search(err), err


# -- tracebacks --------------------------------------------------------------------------------


def test_the_traceback_of_a_failed_task_is_logged_once(console, capsys):
    # Seed 004, In [16]: the flow returns the task's failed state.
    @flow
    def api_flow():
        return boom(return_state=True)

    state = api_flow(return_state=True)
    assert state.is_failed()
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") == 1, err
    assert err.count("\nValueError: boom\n") == 1, err
    assert 'in boom\n    raise ValueError("boom")' in err


def test_the_traceback_of_a_failing_flow_body_is_logged_once(console, capsys):
    @flow
    def broken():
        raise KeyError("missing")

    broken(return_state=True)
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") == 1, err
    assert line(
        "ERROR", f"Flow run '{broken.last_run.name}'", "Encountered exception during execution:"
    ).search(err)


def test_the_traceback_of_a_submitted_task_is_logged_once(console, capsys):
    @flow
    def fire_and_forget():
        boom.submit()

    fire_and_forget(return_state=True)
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") == 1, err


def test_the_traceback_of_a_task_failure_raised_through_the_flow_is_logged_once(console, capsys):
    @flow
    def plain():
        boom()

    plain(return_state=True)
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") == 1, err


# -- get_run_logger ------------------------------------------------------------------------------


def test_get_run_logger_in_a_flow_and_in_its_tasks(console, capsys):
    @task
    def greet(who):
        get_run_logger().info("hello %s", who)
        return who

    @flow(executor=ThreadExecutor(max_workers=2))
    def greeting():
        get_run_logger().warning("starting")
        greet("direct")
        greet.submit("submitted").result()
        greet.map(["mapped"]).result()

    greeting()
    err = capsys.readouterr().err
    name = greeting.last_run.name
    assert line("WARNING", f"Flow run '{name}'", "starting").search(err), err
    assert line("INFO", r"Task run 'greet-0'", "hello direct").search(err), err
    assert line("INFO", r"Task run 'greet-1'", "hello submitted").search(err), err
    assert line("INFO", r"Task run 'greet\[0\]'", "hello mapped").search(err), err


def test_get_run_logger_outside_a_run_is_a_clear_error():
    with pytest.raises(ContextError, match="outside a flow or task run") as info:
        get_run_logger()
    assert "Call it inside a @flow or @task function" in str(info.value)
    # A task called outside any flow is a plain call: there is no run there either.

    @task
    def logs_plainly():
        return get_run_logger()

    with pytest.raises(ContextError):
        logs_plainly()


# -- log_prints --------------------------------------------------------------------------------


def test_log_prints_sends_print_to_the_run_logger(console, capsys):
    @task
    def chatty(x):
        print("in the task", x)
        return x

    @flow(log_prints=True)
    def printing():
        print("in the flow", 1, sep="-")
        print("to stderr, as asked", file=sys.stderr)
        chatty(2)

    printing()
    captured = capsys.readouterr()
    name = printing.last_run.name
    assert line("INFO", f"Flow run '{name}'", "in the flow-1").search(captured.err), captured.err
    assert line("INFO", r"Task run 'chatty-0'", "in the task 2").search(captured.err)
    assert "to stderr, as asked\n" in captured.err
    assert captured.out == ""

    print("outside any run")  # print itself is untouched outside runs
    assert capsys.readouterr().out == "outside any run\n"


def test_log_prints_reaches_submitted_and_mapped_tasks(console, capsys):
    @task
    def chatty(x):
        print("in the task", x)
        return x

    @flow(log_prints=True, executor=ThreadExecutor(max_workers=2))
    def printing():
        chatty.submit(3).result()
        chatty.map([4]).result()

    printing()
    captured = capsys.readouterr()
    assert line("INFO", r"Task run 'chatty-0'", "in the task 3").search(captured.err)
    assert line("INFO", r"Task run 'chatty\[0\]'", "in the task 4").search(captured.err)
    assert captured.out == ""


def test_a_subflow_takes_its_parents_log_prints_unless_it_sets_its_own(console, capsys):
    @flow
    def unset():
        print("from the subflow")

    @flow(log_prints=True)
    def parent():
        unset()

    parent()
    captured = capsys.readouterr()
    name = unset.last_run.name
    assert line("INFO", f"Flow run '{name}'", "from the subflow").search(captured.err)
    assert captured.out == ""
    unset()  # on its own it prints as before
    assert capsys.readouterr().out == "from the subflow\n"


def test_without_log_prints_print_goes_to_stdout(console, capsys):
    @flow
    def plain():
        print("just printed")

    @flow(log_prints=False)
    def quiet():
        print("just printed")

    @flow(log_prints=True)
    def logged():
        quiet()  # a subflow that sets its own keeps it

    plain()
    logged()
    captured = capsys.readouterr()
    assert captured.out == "just printed\njust printed\n"
    assert "just printed" not in captured.err


# -- levels and the quieting of big flows ------------------------------------------------------


def test_headrace_logging_level_warning_hides_info_lines():
    done = run_child(LEVEL_SCRIPT.format(n=2), "WARNING")
    assert re.search(r"\| WARNING \| Flow run '[a-z]+-[a-z]+' - a warning$", done.stderr, re.M)
    assert "INFO" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_headrace_logging_level_info_shows_them():
    # The control for the test above: the same script at INFO logs the lifecycle.
    done = run_child(LEVEL_SCRIPT.format(n=2), "info")
    assert "| INFO    | Flow run" in done.stderr
    assert "Created task run 'add_one-1'" in done.stderr


def test_after_20_task_runs_the_lifecycle_lines_go_quiet(console, capsys):
    @task
    def step(i):
        if i == QUIET_AFTER + 2:
            get_run_logger().info("still heard")
        return i

    @flow
    def busy():
        for i in range(QUIET_AFTER + 5):
            step(i)

    assert QUIET_AFTER == 20
    busy()
    err = capsys.readouterr().err
    name = busy.last_run.name
    created = re.findall(r"Created task run '(step-\d+)'", err)
    assert created == [f"step-{i}" for i in range(20)]
    assert err.count("Finished in state Completed()") == 20
    quiet = line(
        "INFO",
        f"Flow run '{name}'",
        re.escape(
            "More than 20 task runs: further task-run lines are logged at DEBUG "
            "(HEADRACE_LOGGING_LEVEL=DEBUG shows them)."
        ),
    )
    assert len(quiet.findall(err)) == 1, err
    assert err.index("Created task run 'step-19'") < quiet.search(err).start()
    # The task's own lines and the flow's end are still shown.
    assert line("INFO", r"Task run 'step-22'", "still heard").search(err)
    assert line("INFO", f"Flow run '{name}'", r"Finished in state Completed\(.*\)").search(err)


def test_after_20_task_runs_failures_are_still_logged(console, capsys):
    @flow
    def busy():
        for i in range(QUIET_AFTER + 1):
            add_one(i)
        boom(return_state=True)

    busy()
    err = capsys.readouterr().err
    assert line("ERROR", r"Task run 'boom-0'", r"Finished in state Failed\(.*\)").search(err)
    assert err.count("Traceback (most recent call last)") == 1


def test_headrace_logging_level_debug_shows_the_quieted_lines():
    done = run_child(LEVEL_SCRIPT.format(n=QUIET_AFTER + 2), "DEBUG")
    assert re.search(
        r"\| DEBUG   \| Flow run '[a-z]+-[a-z]+' - Created task run 'add_one-21' for task "
        r"'add_one'$",
        done.stderr,
        re.M,
    ), done.stderr
    assert re.search(
        r"\| DEBUG   \| Task run 'add_one-21' - Finished in state Completed\(\)$", done.stderr, re.M
    )
