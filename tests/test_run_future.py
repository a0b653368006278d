"""RunFuture keeps concurrent.futures.Future's contract: one suite, run on both."""

import threading
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    Future,
    InvalidStateError,
    ThreadPoolExecutor,
    TimeoutError,
    as_completed,
    wait,
)

import pytest

from headrace.executors.futures import RunFuture


@pytest.fixture(params=[Future, RunFuture], ids=["stdlib", "RunFuture"])
def make(request):
    return request.param


def test_a_result_reaches_callbacks_added_before_and_after(make):
    f, seen = make(), []
    f.add_done_callback(lambda f: seen.append(("before", f.result())))
    assert not f.done() and not f.running() and not f.cancelled()
    assert f.set_running_or_notify_cancel() and f.running()
    f.set_result(7)
    f.add_done_callback(lambda f: seen.append(("after", f.result())))
    assert f.done() and f.result() == 7 and f.exception() is None
    assert seen == [("before", 7), ("after", 7)]
    with pytest.raises(InvalidStateError):
        f.set_result(8)  # a result is set once


def test_an_exception_is_raised_by_result_and_given_by_exception(make):
    f = make()
    f.set_exception(ValueError("bad"))
    assert isinstance(f.exception(), ValueError)
    with pytest.raises(ValueError, match="bad"):
        f.result()


def test_a_callback_that_raises_is_logged_and_the_others_still_run(make, caplog):
    f, seen = make(), []
    f.add_done_callback(lambda f: 1 / 0)
    f.add_done_callback(lambda f: seen.append(f.result()))
    f.set_result(1)
    assert seen == [1] and "exception calling callback" in caplog.text


def test_cancel_before_running_wins_and_after_running_loses(make):
    f, seen = make(), []
    f.add_done_callback(lambda f: seen.append(f.cancelled()))
    assert f.cancel() and f.cancelled() and f.done() and seen == [True]
    assert not f.set_running_or_notify_cancel()  # a worker that meets it skips it
    with pytest.raises(CancelledError):
        f.result()
    g = make()
    g.set_running_or_notify_cancel()
    assert not g.cancel() and not g.cancelled()


def test_result_blocks_until_another_thread_sets_it_or_times_out(make):
    f = make()
    with pytest.raises(TimeoutError):
        f.result(timeout=0.01)
    threading.Timer(0.05, f.set_result, ("late",)).start()
    assert f.result(timeout=10) == "late"


def test_wait_and_as_completed_work_on_it(make):
    with ThreadPoolExecutor(4) as pool:
        futures = [make() for _ in range(20)]
        gate = threading.Event()

        def finish(i):
            gate.wait(10)
            futures[i].set_running_or_notify_cancel()
            futures[i].set_result(i)

        for i in range(20):
            pool.submit(finish, i)
        first = make()
        threading.Timer(0.05, first.set_result, ("first",)).start()
        done, pending = wait([first, *futures], timeout=10, return_when=FIRST_COMPLETED)
        assert done == {first} and len(pending) == 20
        gate.set()
        assert sorted(f.result() for f in as_completed(futures, timeout=10)) == list(range(20))
        cancelled = make()
        cancelled.cancel()
        threading.Timer(0.05, cancelled.set_running_or_notify_cancel).start()
        assert wait([cancelled], timeout=10).done == {cancelled}
        failed = make()
        threading.Timer(0.05, failed.set_exception, (ValueError("late"),)).start()
        assert list(as_completed([failed], timeout=10)) == [failed]


def test_every_callback_runs_once_while_other_threads_finish_the_futures(make):
    futures = [make() for _ in range(2_000)]
    calls = [0] * len(futures)
    lock = threading.Lock()
    go = threading.Barrier(5)

    def count(i):
        def called(f):
            with lock:
                calls[i] += 1

        return called

    def finish(part):
        go.wait()
        for f in part:
            f.set_running_or_notify_cancel()
            f.set_result(1)

    setters = [threading.Thread(target=finish, args=(futures[k::4],)) for k in range(4)]
    for t in setters:
        t.start()
    go.wait()
    for i, f in enumerate(futures):  # racing the setters: before, during or after each
        f.add_done_callback(count(i))
    for t in setters:
        t.join()
    assert calls == [1] * len(futures)
    assert all(f.result(timeout=0) == 1 for f in futures)
