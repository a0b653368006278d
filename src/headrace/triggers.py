"""Triggers: pure functions that decide, from its upstream states, whether a task runs.

A trigger takes the list of upstream `State`s and returns True to run the
task. When it returns False the task is TriggerFailed; a trigger may also
raise `signals.SKIP` to skip the task. The default is
`all_successful`. Upstream tasks that did not run because the run started
below them (`start_tasks`) are not passed to triggers.

A mapped upstream counts as one state for a reduce: failed when any child
failed. A map child sees the states of its own index.

Called on no upstream states, each trigger answers as Prefect 1's does: it
passes, except `not_all_skipped`, which skips (every upstream of none was
skipped). The engine itself does not consult a trigger when a task has no
upstream states to give it: such a task runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from headrace.signals import SKIP
from headrace.states import State

Trigger = Callable[[Sequence[State]], bool]


def all_successful(states: Sequence[State]) -> bool:
    """Run when every upstream succeeded (Completed, Cached, Mapped, Skipped). The default."""
    return all(s.is_successful() for s in states)


def all_finished(states: Sequence[State]) -> bool:
    """Run when every upstream finished, whatever its outcome."""
    return all(s.is_finished() for s in states)


always_run = all_finished


def all_failed(states: Sequence[State]) -> bool:
    """Run when every upstream failed."""
    return all(s.is_failed() for s in states)


def any_successful(states: Sequence[State]) -> bool:
    """Run when at least one upstream succeeded (true for no upstream)."""
    return not states or any(s.is_successful() for s in states)


def any_failed(states: Sequence[State]) -> bool:
    """Run when at least one upstream failed (true for no upstream)."""
    return not states or any(s.is_failed() for s in states)


def not_all_skipped(states: Sequence[State]) -> bool:
    """Run unless every upstream was skipped (then skip); any failure fails the trigger.

    As in Prefect, no upstream at all counts as every upstream skipped.
    """
    if any(not s.is_successful() for s in states):
        return False
    if all(s.is_skipped() for s in states):
        raise SKIP("Every upstream task was skipped.")
    return True


def _bounded(count_of: Callable[[State], bool], at_least, at_most, what: str) -> Trigger:
    def limit(bound, total):
        return bound * total if isinstance(bound, float) and 0 <= bound <= 1 else bound

    def trigger(states: Sequence[State]) -> bool:
        if not states:
            return True
        n = sum(1 for s in states if count_of(s))
        total = len(states)
        if at_least is not None and n < limit(at_least, total):
            return False
        return not (at_most is not None and n > limit(at_most, total))

    trigger.__name__ = f"some_{what}(at_least={at_least!r}, at_most={at_most!r})"
    return trigger


def some_successful(at_least: int | float | None = None, at_most: int | float | None = None):
    """A trigger that runs when the count of successful upstreams is within bounds.

    A float between 0 and 1 is a fraction of the upstream count. A bound left
    out does not limit; with no upstream at all the trigger passes.
    """
    return _bounded(State.is_successful, at_least, at_most, "successful")


def some_failed(at_least: int | float | None = None, at_most: int | float | None = None):
    """A trigger that runs when the count of failed upstreams is within bounds."""
    return _bounded(State.is_failed, at_least, at_most, "failed")


__all__ = [
    "Trigger",
    "all_successful",
    "all_finished",
    "always_run",
    "all_failed",
    "any_successful",
    "any_failed",
    "not_all_skipped",
    "some_successful",
    "some_failed",
]
