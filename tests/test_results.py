"""headrace.results: serializers, storage and task targets, in both styles of flow.

Targets are checked from the outside: a task body counts its runs in a list (or, across
processes, in a file), and a second run, in this process or a new one, must not run it.
docs/results.md's examples run here too (seed 003, `prefect_ds`, retold), in a fresh
working directory.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from headrace import Flow, Parameter, flow, task, unmapped
from headrace.executors import ProcessExecutor, ThreadExecutor
from headrace.results import (
    FSSpecStorage,
    JSONSerializer,
    LocalStorage,
    PandasSerializer,
    PickleSerializer,
)
from headrace.results.targets import TargetError
from markdown_blocks import python_blocks

RESULTS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "results.md"


class Point:  # a class of a test module: cloudpickle writes it by reference
    def __init__(self, x):
        self.x = x


# -- serializers -------------------------------------------------------------------------------


def test_pickle_serializer_round_trips_what_cloudpickle_pickles():
    s = PickleSerializer()
    assert s.loads(s.dumps({"a": [1, 2.5, None]})) == {"a": [1, 2.5, None]}
    assert s.loads(s.dumps(lambda x: x + 1))(1) == 2
    assert s.loads(s.dumps(Point(3))).x == 3


def test_json_serializer_writes_json_and_names_what_it_cannot():
    s = JSONSerializer()
    assert s.dumps({"é": [1, None]}) == '{"é": [1, null]}'.encode()
    assert s.loads(s.dumps({"b": 2, "a": 1})) == {"a": 1, "b": 2}
    with pytest.raises(TypeError, match="JSONSerializer cannot write a Point"):
        s.dumps(Point(1))
    with pytest.raises(TypeError, match="JSONSerializer cannot write a float"):
        s.dumps(float("nan"))


def test_pandas_serializer_round_trips_frames_in_several_formats():
    import pandas as pd

    frame = pd.DataFrame({"one": [1, 2, 3], "two": ["a", "b", "c"]})
    for fmt in ("csv", "parquet", "json", "feather", "pickle"):
        s = PandasSerializer(fmt)
        assert s.loads(s.dumps(frame)).equals(frame), fmt
    assert PandasSerializer("csv").dumps(frame).startswith(b"one,two\n1,a")  # no index column
    with pytest.raises(ValueError, match="'xlsx' is not one pandas both writes and reads; use one"):
        PandasSerializer("xlsx")
    with pytest.raises(TypeError, match=r"PandasSerializer\('csv'\) writes pandas DataFrames, not"):
        PandasSerializer("csv").dumps({"one": 1})


# -- storage ---------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "fsspec-file", "fsspec-memory"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "results")
    if request.param == "fsspec-file":
        return FSSpecStorage(f"file://{tmp_path}/results")
    return FSSpecStorage(f"memory://headrace-test-{os.getpid()}-{time.monotonic_ns()}")


def test_storage_writes_reads_and_deletes_by_key(storage):
    assert not storage.exists("a/b.bin")
    storage.write("a/b.bin", b"first")
    storage.write("a/b.bin", b"second")  # replaced whole
    assert storage.exists("a/b.bin") and storage.read("a/b.bin") == b"second"
    storage.delete("a/b.bin")
    storage.delete("a/b.bin")  # deleting what is gone is no error
    assert not storage.exists("a/b.bin")
    assert storage.locate("a/b.bin").endswith("results/a/b.bin") or "memory" in repr(storage)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    storage.write("data.csv", b"old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        storage.write("data.csv", b"new, half written")
    monkeypatch.undo()
    assert storage.read("data.csv") == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


def test_local_storage_defaults_to_the_home_of_the_moment(tmp_path, monkeypatch):
    storage = LocalStorage()
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "h"))
    assert storage.locate("x.pkl") == str(tmp_path / "h" / "results" / "x.pkl")


# -- targets: the template ---------------------------------------------------------------------


def test_a_template_naming_an_unknown_field_is_refused_when_the_task_is_defined():
    with pytest.raises(TargetError, match=r"names \{idx\}, and 'idx' is neither an argument"):

        @task(target="data_{idx}.csv")
        def load(id):
            return id

    with pytest.raises(TargetError, match="Available: id, parameters, map_index, task_name"):
        task(lambda id: id, target="{nope}")
    with pytest.raises(TargetError, match=r"names \{\}, an empty field: name one"):
        task(lambda id: id, target="data_{}.csv")
    with pytest.raises(TargetError, match="is not a template"):
        task(lambda id: id, target="data_{id.csv")
    with pytest.raises(TargetError, match="with_options"):
        pass_through = task(lambda id: id)
        pass_through.with_options(target="x_{nope}", name="with_options")
    with pytest.raises(TypeError, match="serializer must be a headrace.results.Serializer"):
        task(lambda id: id, serializer="csv")
    with pytest.raises(TypeError, match=r"result_storage must be .*LocalStorage\(path\)"):
        task(lambda id: id, result_storage="/tmp")
    task(lambda **kw: kw, target="{anything}")  # a task taking **kwargs may name any field


def test_a_mapped_target_must_name_a_mapped_input_or_the_map_index(tmp_path):
    @task(target="{flow_name}-{scale}.json", result_storage=LocalStorage(tmp_path))
    def scaled(x, scale):
        return x * scale

    with Flow("one file for all") as graph:
        with pytest.raises(TargetError, match="every child would write the same file. Add "):
            scaled.map([1, 2], scale=unmapped(3))
        scaled.map([1, 2], [3, 4])  # scale is mapped: a file per child
        scaled.with_options(target="{map_index}.json").map([1, 2], scale=unmapped(3))

    @flow
    def function_flow():
        return scaled.map([1, 2], scale=unmapped(3))

    with pytest.raises(TargetError, match="names no mapped argument and no {map_index}"):
        function_flow()
    assert graph.run().is_successful()


def test_every_field_fills_in(tmp_path):
    where = LocalStorage(tmp_path)

    @task(
        target="{flow_name}/{task_name}/{parameters[n]}/{x:03d}-{map_index}-{today}-{flow_run_id}",
        serializer=JSONSerializer(),
        result_storage=where,
    )
    def keep(x, n):
        return x

    with Flow("fields") as graph:
        n = Parameter("n", default=7)
        keep.map([5, 6], n=unmapped(n))
    state = graph.run()
    assert state.is_successful()
    today = datetime.date.today().isoformat()
    written = sorted(p.name for p in (tmp_path / "fields" / "keep" / "7").iterdir())
    run_id = state.flow_run_id
    assert written == [f"005-0-{today}-{run_id}", f"006-1-{today}-{run_id}"]


def test_a_template_that_cannot_be_filled_in_fails_its_run_naming_what_it_lacks(tmp_path):
    @task(target="{parameters[missing]}.json", result_storage=LocalStorage(tmp_path))
    def needs_a_parameter():
        return 1

    @flow
    def no_parameter():
        return needs_a_parameter(return_state=True)

    state = no_parameter(return_state=True)
    assert state.is_failed()
    assert "cannot be filled in: no value for 'missing'" in state.message


# -- targets: the run --------------------------------------------------------------------------


def counting_task(where, calls, **options):
    @task(target="sq_{x}.json", serializer=JSONSerializer(), result_storage=where, **options)
    def square(x):
        calls.append(x)
        return x * x

    return square


@pytest.mark.parametrize("executor", [None, ThreadExecutor(4)], ids=["local", "threads"])
def test_a_graph_flow_reads_its_targets_instead_of_running(tmp_path, executor):
    calls = []
    square = counting_task(LocalStorage(tmp_path), calls)

    @task
    def total(xs):
        return sum(xs)

    with Flow("targets") as graph:
        squares = square.map([1, 2, 3])
        result = total(squares)
    first = graph.run(executor=executor)
    assert first[result].result() == 14 and sorted(calls) == [1, 2, 3]
    assert [s.name for s in first[squares].map_states] == ["Completed"] * 3
    second = graph.run(executor=executor)
    assert second[result].result() == 14 and sorted(calls) == [1, 2, 3]
    assert [s.name for s in second[squares].map_states] == ["Cached"] * 3
    assert all(s.is_cached() and "Read from its target" in s.message
               for s in second[squares].map_states)  # fmt: skip


def test_a_function_flow_reads_its_targets_instead_of_running(tmp_path):
    calls = []
    square = counting_task(LocalStorage(tmp_path), calls)

    @flow
    def squares(n):
        return [square(i) for i in range(n)], square.submit(n).result()

    assert squares(2) == ([0, 1], 4) and calls == [0, 1, 2]
    assert squares(3) == ([0, 1, 4], 9) and calls == [0, 1, 2, 3]  # only square(3) ran


def test_a_target_that_does_not_read_is_recomputed_with_a_warning(tmp_path, caplog):
    calls = []
    square = counting_task(LocalStorage(tmp_path), calls)

    @flow
    def one(x):
        return square(x)

    assert one(4) == 16
    (tmp_path / "sq_4.json").write_text('{"trunc')
    with caplog.at_level("WARNING"):
        assert one(4) == 16
    assert calls == [4, 4]
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"Target {tmp_path}/sq_4.json does not read (JSONDecodeError")
    assert (tmp_path / "sq_4.json").read_text() == "16"  # written again


def test_a_value_the_serializer_cannot_write_warns_and_the_run_succeeds(tmp_path, caplog):
    @task(target="p.json", serializer=JSONSerializer(), result_storage=LocalStorage(tmp_path))
    def make():
        return Point(1)

    @flow
    def unwritable():
        return make(return_state=True)

    with caplog.at_level("WARNING"):
        state = unwritable(return_state=True)
    assert state.is_successful() and state.result().x == 1
    assert "Its target" in state.message and "was not written: JSONSerializer cannot" in (
        state.message
    )
    assert any("was not written" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "p.json").exists()


def test_process_workers_read_and_write_targets_themselves(tmp_path):
    calls = tmp_path / "calls"

    @task(target="w_{x}.pkl", result_storage=LocalStorage(tmp_path))
    def work(x):
        with open(calls, "a") as f:  # in the worker process
            f.write(f"{x}\n")
        return {"x": x}

    with Flow("on-processes") as graph:
        out = work.map([1, 2])
    for expected_calls in (2, 2):
        state = graph.run(executor=ProcessExecutor(2))
        assert state[out].result() == [{"x": 1}, {"x": 2}]
        assert len(calls.read_text().split()) == expected_calls
    assert [s.name for s in state[out].map_states] == ["Cached", "Cached"]


# -- across processes, as seed 003 shows it ----------------------------------------------------------

SEED_003 = """
import sys, time
import pandas as pd
from headrace import Flow, flow, task
from headrace.results import LocalStorage, PandasSerializer

@task(target="data_{id}.csv", serializer=PandasSerializer("csv"), result_storage=LocalStorage("."))
def demo_task(id):
    time.sleep(float(sys.argv[2]))
    return pd.DataFrame({"one": [1, 2, 3], "two": [4, 5, 6]})

with Flow("test") as graph:
    output = demo_task(1)

@flow(name="test")
def function():
    return demo_task(1, return_state=True)

start = time.time()
state = graph.run()[output] if sys.argv[1] == "graph" else function(return_state=True)
print(state.name, round(time.time() - start, 3), state.result().to_dict("list"))
"""


@pytest.mark.parametrize("style", ["graph", "function"])
def test_a_target_is_read_in_a_new_process_without_running_the_task(style, tmp_path):
    def run(seconds: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SEED_003), style, seconds],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**os.environ, "HEADRACE_HOME": str(tmp_path / "home"), "HEADRACE_PROGRESS": "off"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.split(maxsplit=2)

    name, took, frame = run("1.5")
    assert name == "Completed" and float(took) > 1.5
    assert (tmp_path / "data_1.csv").read_text() == "one,two\n1,4\n2,5\n3,6\n"
    name, took, again = run("1.5")
    assert name == "Cached" and float(took) < 1.0 and again == frame


@pytest.mark.parametrize(
    "code",
    [pytest.param(code, id=f"L{line}-{heading}") for heading, line, code in python_blocks(
        RESULTS_PAGE.read_text())],
)  # fmt: skip
def test_the_results_page_examples_run(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "home"))  # no cache entries yet
    exec(compile(code, str(RESULTS_PAGE), "exec"), {"__name__": "results_example"})


# -- persisted results ----------------------------------------------------------------------


@task
def small(i):
    return i


@task
def large(i):
    return list(range(i, i + 1000))  # over INLINE_BYTES pickled


@task
def length(xs):
    return len(xs)


def test_results_are_persisted_inline_or_as_files_and_read_again_when_released(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    with Flow("persisted") as graph:
        tiny = small(1)
        big = large(1)
        length(big), length([tiny])
    state = graph.run()
    assert state[tiny].is_released() and state[big].is_released()
    assert state[tiny].result() == 1 and state[big].result() == list(range(1, 1001))
    assert state[tiny].ref.data is not None  # inline
    run_id = state.flow_run_id
    [written] = (tmp_path / "results" / run_id).iterdir()
    assert written.name == state[big].task_run_id
    from headrace.store import get_store, open_reader

    get_store().flush()
    refs = {t.task_name: t.result_ref for t in open_reader().task_runs(run_id)}
    assert refs["small"].startswith("inline:pickle:")
    assert refs["large"] == f"file:pickle:{written}"
    assert not any(p.name.endswith(".tmp") for p in written.parent.iterdir())


@pytest.mark.parametrize("how", ["task", "graph flow", "function flow", "parent flow", "env"])
def test_persisting_can_be_turned_off(how, monkeypatch):
    from headrace.errors import ResultReleasedError

    if how == "env":
        monkeypatch.setenv("HEADRACE_PERSIST_RESULTS", "off")
    source = small.with_options(persist_result=False) if how == "task" else small
    with Flow("off", persist_result=False if how == "graph flow" else None) as graph:
        one = source(1)
        length([one])
    if how in ("task", "graph flow", "env"):
        with pytest.raises(ResultReleasedError, match="not persisted"):
            graph.run()[one].result()
        return

    @flow(persist_result=False if how == "function flow" else None)
    def child():
        return length(small.map(range(3)))

    @flow(persist_result=False)
    def parent():
        return child()

    (parent if how == "parent flow" else child)()
    children = [r.state for r in child.last_run.records if r.task_name == "small"]
    assert len(children) == 3 and all(s.is_released() for s in children)
    with pytest.raises(ResultReleasedError):
        children[0].result()


def test_a_bad_persist_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HEADRACE_PERSIST_RESULTS", "sometimes")
    with Flow("bad setting") as graph:
        small(1)
    with pytest.raises(ValueError, match="HEADRACE_PERSIST_RESULTS='sometimes' is not a setting"):
        graph.run()
    with pytest.raises(TypeError, match="persist_result must be True, False or None"):
        task(lambda: 1, persist_result="yes")


def test_a_value_that_cannot_be_pickled_warns_once_per_task_and_stays_in_memory(caplog):
    import threading

    @task
    def lock(i):
        return threading.Lock()

    with Flow("unpicklable") as graph:
        locks = lock.map([1, 2, 3])
    with caplog.at_level("WARNING"):
        state = graph.run()
    assert state.is_successful()
    assert all("Not persisted (TypeError" in s.message for s in state[locks].map_states)
    warnings = [r.getMessage() for r in caplog.records if "is not persisted" in r.getMessage()]
    assert len(warnings) <= 1  # once per task, per process (an earlier test may have warned)


def test_process_workers_persist_and_the_flow_reads_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    with Flow("on processes") as graph:
        big = large.map([1, 2])
        length.map(big)
    state = graph.run(executor=ProcessExecutor(2))
    assert all(child.is_released() for child in state[big].map_states)
    assert state[big].result() == [list(range(1, 1001)), list(range(2, 1002))]
