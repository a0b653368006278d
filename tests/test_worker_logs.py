"""Lines logged inside process and Dask workers are recorded under their task runs, in order.

`get_run_logger()` and `log_prints` in a task run on `ProcessExecutor`, on a
`LocalCluster` and on a cluster of real `dask scheduler` / `dask worker` processes
(which share nothing with the test but the network): every line reaches the run
history, with its task run's id, in the order it was logged.
"""

from __future__ import annotations

import pytest

from dask_processes import dask_cluster_fixture  # noqa: F401  (a fixture)
from headrace import flow, get_run_logger, task
from headrace.executors import DaskExecutor, ProcessExecutor
from headrace.store import get_store, open_reader


@task
def chatty(i):
    logger = get_run_logger()
    logger.info("first line of %d", i)
    print(f"printed by {i}")
    logger.warning("last line of %d", i)
    return i


def run_on(executor) -> dict[str, list[str]]:
    @flow(executor=executor, log_prints=True)
    def talks():
        return [f.result() for f in chatty.map(range(4))]

    state = talks(return_state=True)
    assert state.is_successful(), state.message
    get_store().flush()
    with open_reader() as reader:
        names = {t.id: t.name for t in reader.task_runs(state.flow_run_id)}
        lines: dict[str, list[str]] = {}
        for _, record in reader.logs(state.flow_run_id):
            if record.task_run_id in names:
                lines.setdefault(names[record.task_run_id], []).append(record.message)
    return lines


def expected() -> dict[str, list[str]]:
    return {
        f"chatty[{i}]": [f"first line of {i}", f"printed by {i}", f"last line of {i}"]
        for i in range(4)
    }


def contains_in_order(lines: dict[str, list[str]]) -> bool:
    want = expected()
    return all(
        [m for m in lines.get(name, []) if m in wanted] == wanted for name, wanted in want.items()
    )


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    monkeypatch.setenv("HEADRACE_PROGRESS", "off")


def test_process_workers_lines_are_recorded(home):
    assert contains_in_order(run_on(ProcessExecutor(2)))


def test_local_cluster_workers_lines_are_recorded(home):
    executor = DaskExecutor(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})
    assert contains_in_order(run_on(executor))


def test_dask_worker_processes_lines_are_recorded(home, dask_cluster):
    assert contains_in_order(run_on(DaskExecutor(address=dask_cluster)))


# -- Dask resources from tags -------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_cluster():
    """A scheduler with two worker processes: one with resource GPU=1, one without."""
    from distributed import Client

    from dask_processes import free_port, start, stop

    address = f"tcp://127.0.0.1:{free_port()}"
    scheduler = start("scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                      "--no-dashboard")  # fmt: skip
    common = ("--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1")
    gpu = start("worker", address, "--name", "gpu", "--resources", "GPU=1", *common)
    plain = start("worker", address, "--name", "plain", *common)
    try:
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in (gpu, plain, scheduler):
            stop(process)


def test_dask_resource_tags_place_task_runs_on_workers_that_have_them(home, gpu_cluster):
    @task(tags=["dask-resource:GPU=1"])
    def on_gpu(i):
        from distributed import get_worker

        return get_worker().name

    @task
    def anywhere(i):
        from distributed import get_worker

        return get_worker().name

    @flow(executor=DaskExecutor(address=gpu_cluster))
    def placed():
        return [f.result() for f in on_gpu.map(range(8))], [
            f.result() for f in anywhere.map(range(8))
        ]

    gpus, others = placed()
    assert set(gpus) == {"gpu"}
    assert set(others) <= {"gpu", "plain"}


def test_a_malformed_resource_tag_crashes_its_run_naming_it(home, gpu_cluster):
    @task(tags=["dask-resource:GPU"])
    def bad():
        return 1

    seen = []

    @flow(executor=DaskExecutor(address=gpu_cluster))
    def refused():
        seen.append(bad.submit().wait())

    refused(return_state=True)
    [state] = seen
    assert state.is_crashed()
    assert "dask-resource:NAME=AMOUNT" in state.message


def test_the_scale_page_example_defines_its_flow():
    from pathlib import Path

    from markdown_blocks import python_blocks

    page = Path(__file__).resolve().parent.parent / "docs" / "scale.md"
    [(_, _, code)] = python_blocks(page.read_text())
    namespace: dict = {}
    exec(compile(code, str(page), "exec"), namespace)
    assert namespace["nightly"].executor.address == "tcp://10.0.0.5:8786"
