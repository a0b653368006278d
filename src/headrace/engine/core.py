"""The core: one event-driven ready-set loop that runs the units of a flow run.

A flow style only builds `Node`s and hands them to the core (`add`); the
core decides, submits, retries, throttles, maps and releases. Graph flows
add every node before `run()`; function flows add nodes while it runs, as
their body calls tasks, and wait for the ones they need (`drive`).

Nodes and units
---------------
A `Node` is one task of the run; a *unit* is `(node, index)`: the whole
node (`index` None) or child `index` of a mapped node. A node's `inputs`
say where its arguments come from: an upstream node's result (passed
whole, iterated, element-wise child by child, or un-nested first) or its
state only (`key` None); `constants` and `iterated` hold the rest.

Node fields (state)
-------------------
    ups, downs   distinct upstream / downstream nodes, each with its mode:
                 WHOLE (waits for the whole node) or ELEMENT (child i
                 waits for upstream child i).
    waiting      prerequisites not yet met. A plain node waits for each
                 upstream to finish; a mapped node waits to *expand*: for
                 whole upstreams to finish and element-wise ones to expand.
    state        the final State, once finished.
    children     child states of an expanded mapped node (None = not done),
                 a `ChildStates`: a plain child is kept as its value and bytes.
    child_wait   per child, element-wise upstream children not yet done.
    remaining    children not yet finished.
    started      children that have taken their inputs.
    holds        per result (one, or one per child), consumers not yet
                 started; at zero the result is released unless `keep`.
    sequences    the iterated inputs of an expanded mapped node.
    sources      per flattened mapped upstream, the child behind each item.
    given_children  a partly finished Mapped state to reuse child by child.
    unexpandable an element-wise upstream that finished without expanding.
    preset/reused  the state was known before the run (task_states, NotRun).
    batch        a mapped node's `engine.batch` plan (False: none). The children
                 of a map that runs alike leave the ready stack up to
                 `batch.CHILDREN` at a time and run in one loop (inline), or as
                 one call on a pool's worker (a short task, `batch.send`),
                 recorded as one `ChildRuns`; an outcome other than a Completed
                 result kept inline goes through `handle`.

Core fields (state)
-------------------
    ready        stack of units ready to run: the newest runs first, and a
                 mapped node's children are pushed so child 0 pops first
                 (all of them as one entry when all are ready: `ReadyStack`).
    running      units started and not yet finished: on the executor, or
                 (direct calls) on their owner's thread.
    lingering    bodies a timeout abandoned on a thread, still running: each
                 holds its throttle slots until it returns.
    in_flight    units on the executor, bounded by `executor.max_in_flight`:
                 depth-first, so chained maps release intermediate results
                 early and memory stays flat. After each round of submits
                 the core calls `executor.flush()` (batches go out).
    unfinished   nodes not yet finished; the run ends at zero.
    events       (Attempt, state, future) of finished submissions, fed by
                 executor callbacks (or put inline).
    timers       heap of (due, seq, Attempt) retries waiting on the clock.
    throttle     at most n running units per tag; a unit whose tag is full
                 waits in that tag's queue until a holder finishes. A subflow's
                 core shares its parent's throttle. The store's tag limits
                 are asked for last, on another thread (`engine.throttle`).
    awaiting     units waiting for the store's slots: `granted` readies them.
    retrying     direct calls whose retry is due, waiting for their thread.
    dropped      nodes whose futures are gone (appended from any thread),
                 released on the loop's next turn.

Threads
-------
One thread at a time holds the *turn* and changes the state above; every
change asked from elsewhere is an event: executor callbacks post finished
attempts, a function flow's body posts `(add_one, node)`. A thread that
posts while nobody holds the turn takes it and handles what is queued,
without waiting and without running inline units (the body may be about
to add their consumers). `drive(until)` holds the turn and runs the loop
until `until()`; other threads wait for it to move. A unit may be owned
by a thread (a function flow's direct call): only that thread runs it, so
a holder that meets another thread's unit hands the turn over. With
`share_turn` (an async flow's calls come from several threads) an owner
runs its unit outside the turn.

Events
------
    add(nodes, presets)   nodes join; presets finish at once, roots wake
    wake(node)            prerequisites met: a plain node is ready, a
                          mapped node expands (or is decided as a whole)
    finish(node, i, st)   a unit's final state: wake what waited for it;
                          the last child finishes the node as `Mapped`
    started(node, i)      a unit took its inputs: drop holds upstream
    a Retrying state      frees throttle slots, waits in `timers`, and is
                          resubmitted with the same inputs when due
    stop()                an interrupt: nothing more starts; running units end

Every final state of a unit that ran or was decided goes through `_after`:
the task's hooks, a failure's traceback in the log, and a row of run
history (handed to the recorder, never waited for). No polling and no
sleeps: the loop blocks on `events`, or on the clock until a retry is due.
"""

from __future__ import annotations

import copy
import heapq
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from headrace.edges import flatten_once, flatten_origins
from headrace.engine import batch, logs
from headrace.engine.nodes import ELEMENT, NOTHING, WHOLE, Attempt, Node, ReadyStack
from headrace.engine.recorder import task_run_done, task_state
from headrace.engine.task_run import (
    TaskSpec,
    after_run,
    decide_before_run,
    outcome,
    run_task,
    when_body_returns,
)
from headrace.engine.values import child_value, local_value, release_value, value_of
from headrace.errors import MappingError, ResultReleasedError
from headrace.results.persist import PICKLE
from headrace.states import SUCCEEDED, ChildStates, Failed, MappedState, State, is_plain_inline
from headrace.store.records import ChildRuns, TaskRun
from headrace.tasks import check_lengths, check_mappable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

INTERRUPTED = "The flow run was interrupted (Ctrl-C) before it finished."
CHILD_RECORD_SECONDS = 0.05  # the longest a finished child waits in its map's record


class StalledError(RuntimeError):
    """The loop has unfinished nodes and nothing that could finish them (a bug)."""


class Core:
    """Runs the units of one flow run: `add` nodes, then `run()` (or `drive` while
    adding more)."""

    def __init__(self, executor, throttle, clock, flow_ctx, recorder, progress=None):
        self.executor = executor
        self.throttle = throttle
        self.clock = clock
        self.flow_ctx, self.recorder, self.progress = flow_ctx, recorder, progress
        self.nodes: list[Node] = []
        self.ready = ReadyStack()
        self.running = 0  # units running: on the executor, or on their owner's thread
        self.in_flight = 0  # units on the executor, bounded by its max_in_flight
        self.lingering = 0  # abandoned (timed-out) bodies still running, holding slots
        self.awaiting = 0  # units waiting for the store's tag-limit slots
        self.unfinished = 0
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.timers: list = []  # (due, seq, Attempt)
        self._seq = 0
        self.limit = max(1, executor.max_in_flight)
        self.retrying: dict[tuple[Node, int | None], Attempt] = {}  # direct calls due again
        self.share_turn = False  # run owned units outside the turn (several calling threads)
        self.stopped = False  # interrupted: every drive returns, finished or not
        self._turn = threading.Lock()
        self._holder: int | None = None
        self._moved = threading.Condition()
        self._generation = self._waiters = 0
        self._owned: dict[int, list] = {}  # thread -> its ready units another thread met
        self.dropped: deque = deque()  # nodes whose futures are gone, from any thread
        self.child_records: dict[Node, ChildRuns | None] = {}  # see `child_record`
        self._record_times: dict[Node, list[float]] = {}  # [last child, due] on the clock

    # -- adding nodes --------------------------------------------------------------------
    def add(self, nodes: list[Node], presets: dict[Node, State] | None = None) -> None:
        """Link `nodes` (each after its upstream nodes, which may have been added
        earlier and even have finished), finish the `presets` and wake what waits
        for nothing. All presets are marked before any is applied, so applying one
        never wakes a node that is about to get its own state."""
        presets = presets or NOTHING
        for node in nodes:
            node.holds = node.extra_holds
            node.preset = node in presets
            if not node.mapped and node.spec is None:
                node.spec = TaskSpec(node.task)
            if not node.inputs:  # a root (most direct calls): nothing to link
                continue
            modes: dict[Node, int] = {}
            for inp in node.inputs:
                mode = ELEMENT if inp.element_wise else WHOLE
                modes[inp.up] = min(modes.get(inp.up, mode), mode)
            node.ups = list(modes.items())
            waiting = 0
            for up, mode in node.ups:
                if up.downs:
                    up.downs.append((node, mode))
                else:
                    up.downs = [(node, mode)]
                _hold(up)
                if up.state is None and (mode == WHOLE or up.children is None or up.reused):
                    waiting += 1  # (a reused Mapped state expands when it finishes)
                elif mode == ELEMENT and up.children is None:  # finished without expanding
                    node.unexpandable = node.unexpandable or up
            node.waiting = waiting
        self.nodes.extend(nodes)
        self.unfinished += len(nodes)
        free = [node for node in nodes if node.waiting == 0 and not node.preset]
        for node, state in presets.items():  # these wake the nodes that wait only for them
            self.finish(node, None, state)
        for node in free:
            self._wake(node)

    def add_one(self, node: Node) -> None:
        """`add` for a node a function flow's call made (an event the loop handles)."""
        self.add([node], {node: node.given} if node.given is not None else None)

    def _release_dropped(self) -> None:
        """Futures that are gone give up their hold on their unit's result."""
        dropped = self.dropped
        while dropped:
            node = dropped.popleft()
            if isinstance(node.holds, list):  # every child of a map
                for i in range(len(node.holds)):
                    self._release(node, i)
            elif node.mapped:  # not expanded yet: its children start with one hold less
                node.holds -= 1
            else:
                self._release(node, None)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        """Run until every node has finished."""
        self.drive(self.finished)

    def finished(self) -> bool:
        return not self.unfinished

    def stop(self, _=None) -> None:
        """Start nothing more (an interrupt): ready units stay unrun, running ones end, and
        every thread driving returns (a direct call's unit unfinished)."""
        self.stopped, self.limit = True, 0
        self.ready.clear()
        self.timers.clear()
        self._hand_over_records()  # the children that finished are recorded

    def post(self, event) -> None:
        """Hand the loop an event from any thread: a finished submission, or a
        `(function, argument)` to call in the loop. Whoever holds the turn handles
        it; when nobody does, this thread takes the turn and handles what is queued."""
        self.events.put(event)
        if self._turn.acquire(blocking=False):
            self._holder = threading.get_ident()
            self._drain()
            self._let_go()

    def drive(self, until: Callable[[], bool], adding: Node | None = None) -> None:
        """Run the loop in this thread until `until()` holds, `adding` a node first (see
        Threads above). A thread already holding the turn (a task calling a task) runs
        the loop where it is."""
        me = threading.get_ident()
        if self._holder == me:  # nested: the turn is ours until the outer call lets go
            if adding is not None:
                self.add_one(adding)
            self._turn_once(me, until, nested=True)
            return
        while not self.stopped and (adding is not None or not until()):
            generation = self._generation
            if self._turn.acquire(blocking=False):
                self._holder = me
                try:
                    if adding is not None:
                        self.add_one(adding)
                        adding = None
                    outcome_ = self._turn_once(me, until)
                finally:
                    self._let_go()
                if outcome_ is _YIELD:
                    self._wait_for_move(generation + 1, until)
                elif outcome_ is not None:  # an own unit to run outside the turn
                    self.events.put((outcome_, run_task(*self._payload(outcome_)), None))
                continue
            if adding is not None:  # whoever holds the turn adds it
                self.post((self.add_one, adding))
                adding = None
                continue
            self._wait_for_move(generation, until)

    def call(self, node: Node) -> None:
        """Add a direct call's node (owned by this thread) and drive until it finishes: at
        once when the turn is free; `drive` waits for inputs, throttle slots, retries."""
        adding = node
        if self._holder is None and not self.share_turn and self._turn.acquire(blocking=False):
            self._holder, adding = threading.get_ident(), None
            try:
                self.add_one(node)
                self._launch(self._holder)
            finally:
                self._let_go()
        if node.state is None:
            self.drive(lambda: node.state is not None, adding=adding)

    def drive_for(self, until: Callable[[], bool], seconds: float) -> None:
        """`drive(until)` for at most `seconds` on the core's clock."""
        deadline = self.clock.monotonic() + seconds
        self.post((self._push_timer, deadline))  # wakes the loop, and its waiters, then
        self.drive(lambda: until() or self.clock.monotonic() >= deadline)

    def _wait_for_move(self, generation: int, until: Callable[[], bool]) -> None:
        with self._moved:
            self._waiters += 1
            while self._generation == generation and not until() and not self.stopped:
                self._moved.wait()
            self._waiters -= 1

    def _let_go(self) -> None:
        """Give up the turn; handle events that came meanwhile if nobody else will."""
        while True:
            self._holder = None
            self._turn.release()
            self._moved_on()
            if self.events.empty() or not self._turn.acquire(blocking=False):
                return
            self._holder = threading.get_ident()
            self._drain()

    def _moved_on(self) -> None:
        # Waiters count themselves before reading the generation, so one that this
        # does not see waiting reads the new generation and does not wait.
        self._generation += 1
        if self._waiters:
            with self._moved:
                self._moved.notify_all()

    def _drain(self) -> None:
        """Handle every queued event and submit what that made ready, without waiting.

        Inline units wait for a thread that drives: the one posting may be a flow's
        body about to add their consumers, which keeps chained maps depth-first."""
        self._handle_queued()
        if self.dropped:
            self._release_dropped()
        if not self.executor.inline:
            self._launch(None)

    def _handle_queued(self) -> None:
        events = self.events  # only the turn's holder takes from it
        while not events.empty():
            self.handle(events.get_nowait())

    def _turn_once(self, me: int, until: Callable[[], bool], nested: bool = False):
        """Holding the turn: run the loop until `until()` holds (None), another
        thread's unit waits for it (_YIELD), or an own unit is to run outside the
        turn (its Attempt). A nested loop neither yields nor leaves the turn."""
        timers, clock = self.timers, self.clock
        while not until() and not self.stopped:
            run_here = self._launch(me, outside=self.share_turn and not nested)
            if run_here is not None:
                return run_here
            if until():
                return None
            if self._owned:
                if me in self._owned:  # own units that became ready meanwhile
                    continue
                if not nested:
                    return _YIELD
            if timers and timers[0][0] <= clock.monotonic():
                self.resubmit_due()
                continue
            if not (self.running or self.lingering or self.awaiting or timers or self.ready):
                stuck = [n.name for n in self.nodes if n.state is None]
                raise StalledError(f"the run stalled with unfinished tasks: {stuck[:10]}")
            if self.ready and self.in_flight < self.limit:
                continue
            seconds = timers[0][0] - clock.monotonic() if timers else None
            if self.child_records:
                self._hand_over_records()
            busy = self.running > 0 or self.lingering > 0 or self.awaiting > 0
            event = clock.wait(self.events, seconds, busy=busy)
            if event is not None:
                self.handle(event)
                self._handle_queued()  # what came meanwhile, before launching more
                if self._waiters:
                    self._moved_on()
        return None

    def _launch(self, me: int | None, outside: bool = False) -> Attempt | None:
        """Run `me`'s own ready units (direct calls use no executor slot) here, or
        return one to run `outside` the turn; then submit shared ready units while
        the executor's in-flight bound allows. Futures that are gone let go first."""
        if self.dropped:
            self._release_dropped()
        mine = self._owned.pop(me, None) if me is not None else None
        while mine:
            node, index = mine.pop()
            attempt = self._start(node, index)
            if attempt is None:
                continue
            self.running += 1
            if outside:
                if mine:
                    self._owned[me] = mine
                return attempt
            self.handle((attempt, run_task(*self._payload(attempt)), None))
        ready, inline = self.ready, self.executor.inline
        batches = inline or self.executor.batches
        while ready and self.in_flight < self.limit:
            if batches and self._batched():
                continue
            attempt = self._start(*ready.pop_unit())
            if attempt is not None:
                self.submit(attempt)
                if inline:
                    self.handle(self.events.get())
        if not inline:
            self.executor.flush()
        return None

    def _batched(self) -> bool:
        """Run the next children of the span on top of the ready stack as one batch (or
        hand them to the executor as one call), when its map qualifies (`engine.batch`);
        False when they go one by one."""
        span = self.ready.top_span()
        if span is None:
            return False
        node = span.node
        if node.batch is None:
            node.batch = batch.plan(self, node) or False
        if node.batch is False:
            return False
        if self.executor.inline:
            return batch.run(self, node, node.batch, span)
        return batch.send(self, node, node.batch, span)

    def _start(self, node: Node, index: int | None) -> Attempt | None:
        """The attempt that runs a ready unit: its due retry, or a new one (None when it
        was decided without running, is finished already, or waits for a throttle slot)."""
        if node.state is not None or (index is not None and node.children[index] is not None):
            return None  # decided as a whole meanwhile, or reused
        attempt = self.retrying.pop((node, index), None) if self.retrying else None
        if self.throttle and not self.throttle.take(
            node.task.tags,
            (self, "ready", (node, index)) if attempt is None else (self, "retry", attempt),
            (node, index),
        ):
            return None
        if attempt is not None:
            attempt.run_count += 1
            return attempt
        return self.prepare(node, index)

    def _make_ready(self, node: Node, index: int | None) -> None:
        """A unit is ready: for its owner thread to run, or on the shared stack."""
        if node.owner is not None:
            self._owned.setdefault(node.owner, []).append((node, index))
        else:
            self.ready.append((node, index))

    def _payload(self, attempt: Attempt) -> tuple:
        """`run_task`'s arguments for an attempt: small and picklable."""
        node, index = attempt.node, attempt.index
        return (
            node.spec, attempt.arguments, node.unit_name(index), index, self.flow_ctx,
            attempt.run_count, attempt.loop, node.unit_id(index),
        )  # fmt: skip

    def submit(self, attempt: Attempt) -> None:
        """Start an attempt on the executor; its outcome comes back through `post`."""
        self.running += 1
        self.in_flight += 1
        if self.executor.inline:
            # Same code path as a pool, minus the future: the call runs right here.
            self.events.put((attempt, run_task(*self._payload(attempt)), None))
            return
        future = self.executor.submit(run_task, *self._payload(attempt))
        future.add_done_callback(lambda f, attempt=attempt: self.post((attempt, None, f)))

    def handle(self, event) -> None:
        if len(event) == 2:  # (function, argument): a change asked for by another thread
            event[0](event[1])
            return
        attempt, state, future = event
        node, index = attempt.node, attempt.index
        self.running -= 1
        if node.owner is None:
            self.in_flight -= 1
        if future is not None:
            if future.cancelled() and self.stopped:  # an interrupt: it never ran, so unrun
                if self.throttle:
                    self._free_slots(node, index)
                return
            state = outcome(future, attempt.run_count, node.spec.retries)
        if self.throttle:
            self._free_slots_after_body(node, index, state)
        if state.is_retrying():  # resume from the attempt and the loop pass that failed
            attempt.run_count = state.run_count
            attempt.loop = state.loop or attempt.loop
            run_id, flow_run_id = node.unit_id(index), self.flow_ctx.flow_run_id
            delay = node.spec.retry_delay(state.run_count)
            logs.task_logger(node.unit_name(index), run_id, flow_run_id).warning(
                "%s Retrying in %g s.", state.message, delay
            )
            task_state(self.recorder, run_id, flow_run_id, state)
            self._push_timer(self.clock.monotonic() + delay, attempt)
            return
        self._after(node, index, state, attempt.start, attempt.run_count)
        self.finish(node, index, state)

    def _push_timer(self, due: float, attempt: Attempt | None = None) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (due, self._seq, attempt))

    def resubmit_due(self) -> None:
        """Retries whose delay has passed go back to the executor (throttle permitting)."""
        now = self.clock.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, attempt = heapq.heappop(self.timers)
            if attempt is None:  # a waiter's deadline (`drive_for`): the loop looks again
                self._moved_on()
                continue
            if attempt.node.owner is not None:  # a direct call retries on its caller's thread
                self.retrying[attempt.node, attempt.index] = attempt
                self._make_ready(attempt.node, attempt.index)
                continue
            if self.throttle and not self.throttle.take(
                attempt.node.task.tags, (self, "retry", attempt), (attempt.node, attempt.index)
            ):
                continue
            attempt.run_count += 1
            self.submit(attempt)
        self.executor.flush()

    # -- preparing a unit ------------------------------------------------------------------
    def prepare(self, node: Node, index: int | None) -> Attempt | None:
        """Decide the unit without running it, or return the attempt that runs it."""
        decided = decide_before_run(
            node.task, self._upstream_states(node, index), check_trigger=not node.start
        )
        arguments = None
        if decided is None:
            try:
                arguments = self._arguments(node, index)
                if node.owner is not None and self.executor.remote_results:
                    # A direct call runs here: fetch what stayed on the workers.
                    arguments = {k: local_value(v) for k, v in arguments.items()}
            except ResultReleasedError as exc:
                decided = Failed(str(exc), exception=exc)
        self._started(node, index)
        if decided is not None:
            if self.throttle:
                self._free_slots(node, index)
            self._after(node, index, decided)
            self.finish(node, index, decided)
            return None
        if node.call is not None and node.task.trigger is not None:
            node.call.accept_failures()
        return Attempt(node, index, arguments, time.time())

    def _upstream_states(self, node: Node, index: int | None) -> list[tuple[str, State]]:
        """(name, state) of each upstream, as the unit's trigger sees them."""
        call = node.call
        if call is not None and (call.picks or call.per_child or call.states):
            return call.upstream_states(node, index)
        if not node.ups:
            return ()
        if index is None:
            return [(up.name, up.state) for up, _ in node.ups]
        sources = node.sources  # a flattened upstream: the item's own child
        return [
            (up.name, up.children[index])
            if mode == ELEMENT
            else (up.name, sources[up][index] if up in sources else up.state)
            for up, mode in node.ups
        ]

    def _arguments(self, node: Node, index: int | None) -> dict[str, Any]:
        arguments = dict(node.constants)
        if index is not None:
            for key, seq in node.sequences.items():
                arguments[key] = seq[index]
        for inp in node.inputs:
            if inp.key is None or (index is not None and inp.key in node.sequences):
                continue
            up = inp.up
            if index is not None and inp.element_wise:
                arguments[inp.key] = child_value(up.children, index)
            else:
                value = value_of(up.state)
                arguments[inp.key] = (
                    flatten_once(local_value(value), up.name, self._warn) if inp.flat else value
                )
        call = node.call
        if call is not None and (call.structures or call.per_child):
            call.resolve(arguments, index)
        return arguments

    # -- expansion of mapped nodes ---------------------------------------------------------
    def _wake(self, node: Node) -> None:
        """All prerequisites met: a plain node is ready; a mapped node expands."""
        if not node.mapped:
            self._make_ready(node, None)
            return
        upstream = [(up.name, up.state) for up, _ in node.ups if up.state is not None]
        whole = [(up.name, up.state) for up, mode in node.ups if mode == WHOLE]
        # A skipped whole upstream (an untaken `case`) skips the map as a whole.
        failure = decide_before_run(node.task, whole, check_trigger=False)
        if failure is None and node.unexpandable is not None:
            failure = decide_before_run(node.task, upstream, check_trigger=not node.start)
            failure = failure or Failed(
                f"Cannot map over {node.unexpandable.name!r}: it finished as "
                f"{node.unexpandable.state.name} without mapped results."
            )
        elif failure is None:
            try:
                sequences, length = self._sequences(node)
            except (MappingError, ResultReleasedError) as exc:
                failure = decide_before_run(node.task, upstream, check_trigger=not node.start)
                failure = failure or Failed(str(exc), exception=exc)
        if failure is not None:
            self._started(node, None)
            self._after(node, None, failure)
            self.finish(node, None, failure)
            return
        self._expand(node, sequences, length)

    def _expand(self, node: Node, sequences: dict, length: int) -> None:
        if self.recorder.recording:  # its children's record counts their pace from here
            now = self.clock.monotonic()
            self._record_times[node] = [now, now]
        node.sequences = sequences
        node.spec = node.spec or TaskSpec(node.task)
        node.children = children = ChildStates(length, node.name, node.run_id)
        node.remaining = length
        node.holds = [node.holds] * length
        elements = [up for up, mode in node.ups if mode == ELEMENT]
        node.child_wait = (
            [sum(1 for up in elements if up.children[i] is None) for i in range(length)]
            if elements
            else [0] * length
        )
        if self.progress is not None:
            self.progress.expanded(node, node.name, length)
        given = node.given_children  # a list of the same length, or {index: state} (resume)
        if given is not None and (isinstance(given, dict) or len(given) == length):
            self._reuse_children(node, given)
        for down, mode in node.downs:
            if mode == ELEMENT:
                self._prerequisite_met(down)
        if length == 0:
            self._started(node, None)
            self.finish(node, None, MappedState([]))
            self._record_whole(node)
            return
        if not elements and node.remaining == length:  # all of them: one entry, not `length`
            self.ready.push_all(node, length)
            return
        self.ready.extend(
            (node, i)
            for i in range(length - 1, -1, -1)
            if node.child_wait[i] == 0 and children[i] is None
        )

    def _reuse_children(self, node: Node, given: list[State] | dict[int, State]) -> None:
        """Take the finished children of a given, partly finished Mapped state; the
        others run. Copies, so that releasing their results leaves the caller's alone."""
        for i, child in given.items() if isinstance(given, dict) else enumerate(given):
            if i < len(node.children) and child.is_finished():
                node.children[i] = copy.copy(child)
                node.remaining -= 1
                self._started(node, i)
                if self.progress is not None:
                    self.progress.child_done(node, child.is_failed())

    def _sequences(self, node: Node) -> tuple[dict, int]:
        """The iterated inputs of `node` as indexable sequences, and their common length."""
        lengths: dict[str | None, Any] = dict(node.iterated)
        sequences = dict(node.iterated)
        for inp in node.inputs:
            if not inp.mapped:
                continue
            up = inp.up
            label = inp.key or f"upstream {up.name!r}"
            if inp.element_wise:
                lengths[label] = up.children
                continue
            value = local_value(value_of(up.state))
            if inp.flat and isinstance(up.state, MappedState):
                # Each item keeps the child it came from: a failed or skipped child
                # decides only the items it gave.
                value, origins = flatten_origins(value, up.name, self._warn)
                children = up.state.map_states
                node.sources = {**node.sources, up: [children[i] for i in origins]}
            elif inp.flat:
                value = flatten_once(value, up.name, self._warn)
            seq = check_mappable(value, inp.key, node.name)
            if inp.key is not None:
                sequences[inp.key] = seq
            lengths[label] = seq
        return sequences, check_lengths(lengths, node.name)

    def _prerequisite_met(self, node: Node) -> None:
        node.waiting -= 1
        if node.waiting == 0 and node.state is None and not node.preset:
            self._wake(node)

    # -- finishing -------------------------------------------------------------------------
    def finish(self, node: Node, index: int | None, state: State) -> None:
        if node.call is not None and not node.keep:  # its futures may already be gone
            held = node.holds if index is None else node.holds[index]
            if held == 0:
                release_value(state, node.unit_name(index))
        if index is None:
            node.state = state
            self.unfinished -= 1
            expanded = node.children is not None
            for down, mode in node.downs:
                if mode == WHOLE or (node.reused and expanded):
                    # A reused Mapped state brings its expansion and its children at once.
                    self._prerequisite_met(down)
                elif not expanded:
                    # An element-wise upstream that will never expand: decide as a whole.
                    down.unexpandable = down.unexpandable or node
                    self._prerequisite_met(down)
            return
        node.children[index] = state
        if not node.keep and node.children.__class__ is ChildStates:
            node.children.compact(index)  # (the caller's states stay the ones it was given)
        self.child_finished(node, index, state.is_failed())

    def child_finished(self, node: Node, index: int, failed: bool) -> None:
        """Child `index` of `node` has its final state in `node.children`: wake what
        waited for it; the last one finishes the node as `Mapped`."""
        if self.progress is not None:
            self.progress.child_done(node, failed)
        for down, mode in node.downs:
            if mode == ELEMENT and down.child_wait is not None and down.state is None:
                down.child_wait[index] -= 1
                if down.child_wait[index] == 0 and down.children[index] is None:
                    self.ready.append((down, index))
        node.remaining -= 1
        if node.remaining == 0:
            node.state = MappedState(node.children)
            node.batch = False  # (its plan holds the inputs its children shared)
            self.flush_child_record(node)
            self.child_records.pop(node, None)
            self._record_times.pop(node, None)
            self._record_whole(node)
            self.unfinished -= 1
            for down, mode in node.downs:
                if mode == WHOLE:
                    self._prerequisite_met(down)

    def _started(self, node: Node, index: int | None) -> None:
        """`node` (or its child) has taken its inputs: drop holds on upstream results."""
        if index is not None:
            node.started += 1
        whole_started = index is None or node.started == len(node.children)
        for up, mode in node.ups:
            if up.reused or up.state is not None and up.state.is_not_run():
                continue
            if mode == ELEMENT and index is not None:
                self._release(up, index)
            elif whole_started:
                if up.children is None:
                    self._release(up, None)
                else:
                    for i in range(len(up.children)):
                        self._release(up, i)

    def _release(self, up: Node, index: int | None) -> None:
        if index is None:
            up.holds -= 1
            if up.holds == 0 and not up.keep and up.state is not None:
                release_value(up.state, up.name)
        else:
            up.holds[index] -= 1
            if up.holds[index] == 0 and not up.keep:
                if up.children.__class__ is ChildStates:
                    up.children.release(index)
                elif up.children[index] is not None:
                    release_value(up.children[index], up.unit_name(index))

    # -- throttling --------------------------------------------------------------------------
    def _free_slots(self, node: Node, index: int | None) -> None:
        """Free a unit's slots; what waited for them is ready again (or due, for a
        retry), in whichever core it belongs to (a subflow shares its parent's)."""
        for core, kind, parked in self.throttle.release(node.task.tags, (node, index)):
            if core is self:
                self._unpark((kind, parked))
            else:
                core.post((core._unpark, (kind, parked)))

    def _free_slots_after_body(self, node: Node, index: int | None, state: State) -> None:
        """A body abandoned by its timeout still runs: it holds its slots until it ends."""
        later = when_body_returns(state)
        if later is None:
            return self._free_slots(node, index)
        self.lingering += 1
        later(lambda: self.post((self._body_returned, (node, index))))

    def _body_returned(self, unit: tuple) -> None:
        self.lingering -= 1
        self._free_slots(*unit)

    def granted(self, entry: tuple) -> None:
        """The store granted a parked unit its tag-limit slots: it may start (or, decided
        meanwhile, gives them back)."""
        _, kind, parked = entry
        self.awaiting -= 1
        if kind == "ready":
            node, index = parked
            if node.state is not None or (index is not None and node.children[index] is not None):
                self._free_slots(node, index)
                return
        self._unpark((kind, parked))

    def _unpark(self, entry: tuple) -> None:
        kind, parked = entry
        if kind == "ready":
            self._make_ready(*parked)
        else:  # due at once: the next loop turn resubmits it
            self._push_timer(float("-inf"), parked)

    # -- hooks and history --------------------------------------------------------------------
    def _record_whole(self, node: Node) -> None:
        """The record of a mapped task as a whole (its children have their own)."""
        node.state.task_run_id, node.state.flow_run_id = node.run_id, self.flow_ctx.flow_run_id
        if not self.recorder.recording:
            return
        task_run_done(
            self.recorder, node.run_id, self.flow_ctx.flow_run_id, node.task.name, node.name,
            node.key, None, None, node.upstream_ids(None), node.task.tags, node.state,
            None, 1,
        )  # fmt: skip

    def _warn(self, message: str) -> None:
        logs.flow_logger(self.flow_ctx.flow_run_name, self.flow_ctx.flow_run_id).warning(message)

    def _after(self, node: Node, index, state: State, start=None, run_count: int = 1) -> None:
        """A unit's final state: its ids, log, hooks, and its record in the run history."""
        run_id = node.unit_id(index)
        flow_run_id = self.flow_ctx.flow_run_id
        state.task_run_id, state.flow_run_id = run_id, flow_run_id
        run_name = node.unit_name(index)
        after_run(node.task, state, run_name, run_id, flow_run_id)
        if node.call is not None:
            node.call.finished(node, index, state)
        if not self.recorder.recording:
            return
        if index is not None and run_count == 1 and start is not None:
            ref = state.ref
            if is_plain_inline(state) and ref.cache_key is None:
                runs = self.child_record(node)
                if runs is not None and ref.serializer.name == runs.serializer:
                    self.add_child_record(node, runs, index, start, time.time(), ref.data)
                    return
        task_run_done(
            self.recorder, run_id, flow_run_id, node.task.name, run_name, node.key, index,
            node.run_id if index is not None else None, node.upstream_ids(index),
            node.task.tags, state, start or time.time(), run_count,
        )  # fmt: skip

    def child_record(self, node: Node) -> ChildRuns | None:
        """The record of `node`'s plain Completed children not yet handed to the recorder
        (`ChildRuns`, kept compactly by the store), or None when a child's record is not
        its parent's but for its index, times and result (an element-wise input). The
        first one records the parent Running: its row is what its children are read by."""
        if node in self.child_records:
            return self.child_records[node]
        call = node.call
        if any(inp.element_wise for inp in node.inputs) or (call is not None and call.per_child):
            self.child_records[node] = None
            return None
        upstream, tags = node.upstream_ids(None), sorted(node.task.tags)
        flow_run_id = self.flow_ctx.flow_run_id
        self.recorder.task_run(
            TaskRun(node.run_id, flow_run_id, node.task.name, node.name, node.key,
                    upstream=upstream, tags=tags)
        )  # fmt: skip
        runs = self.child_records[node] = ChildRuns(
            flow_run_id, node.task.name, node.name, node.key, node.run_id, upstream, tags,
            (node.spec.serializer or PICKLE).name, SUCCEEDED,
        )  # fmt: skip
        return runs

    def add_child_record(self, node, runs, index, start, end, data) -> None:
        """A child into its map's record, handed over once it holds `batch.CHILDREN`, its
        first child came `CHILD_RECORD_SECONDS` ago, its children come slower than that
        (on the core's clock), or the loop waits: a run killed loses no more history."""
        now = self.clock.monotonic()
        times = self._record_times.get(node) or self._record_times.setdefault(node, [now, now])
        if not runs:
            times[1] = now + CHILD_RECORD_SECONDS
        gap, times[0] = now - times[0], now
        runs.add(index, start, end, data)
        if gap >= CHILD_RECORD_SECONDS or now >= times[1] or len(runs) >= batch.CHILDREN:
            self.flush_child_record(node)

    def _hand_over_records(self) -> None:
        """What every map's child record holds goes (before the loop waits, at a stop)."""
        for node, runs in self.child_records.items():
            if runs:
                self.flush_child_record(node)

    def flush_child_record(self, node: Node) -> None:
        """Hand the recorder what `node`'s child record holds; a fresh one goes on."""
        runs = self.child_records.get(node)
        if runs:
            self.child_records[node] = runs.emptied()
            self.recorder.task_runs(runs)


_YIELD = object()  # a holder hands the turn to the thread whose unit it met


def _hold(up: Node) -> None:
    """One more consumer holds `up`'s result (each child's, once expanded)."""
    if isinstance(up.holds, list):
        up.holds = [h + 1 for h in up.holds]
    else:
        up.holds += 1


__all__ = ["Core", "StalledError", "INTERRUPTED"]
