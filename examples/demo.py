"""The demo `make demo` runs: a small graph flow that maps, reduces and branches.

(The X-Files tutorial against a bundled offline site replaces it as the demo
once the task library and the site exist.)
"""

from __future__ import annotations

import time

from headrace import Flow, Parameter, case, merge, task, unmapped
from headrace.executors import ThreadExecutor


@task
def list_words(text: str) -> list[str]:
    return text.split()


@task(tags=["cpu"])
def score(word: str, bonus: int) -> int:
    return sum(ord(c) - 96 for c in word.lower() if c.isalpha()) + bonus


@task
def total(scores: list[int]) -> int:
    return sum(scores)


@task
def is_big(n: int) -> str:
    return "big" if n > 500 else "small"


@task
def shout(n: int) -> str:
    return f"{n}!"


@task
def whisper(n: int) -> str:
    return f"({n})"


with Flow("word-scores") as flow:
    text = Parameter("text", default="the truth is out there trust no one")
    bonus = Parameter("bonus", default=1)
    words = list_words(text)
    scores = score.map(words, bonus=unmapped(bonus))
    summed = total(scores)
    size = is_big(summed)
    with case(size, "big"):
        loud = shout(summed)
    with case(size, "small"):
        quiet = whisper(summed)
    said = merge(loud, quiet)


def main() -> None:
    for label, executor in (("local", None), ("threads", ThreadExecutor(4))):
        started = time.perf_counter()
        state = flow.run(executor=executor, throttle={"cpu": 2}, return_tasks=[scores, summed])
        elapsed = (time.perf_counter() - started) * 1000
        print(f"[{label}] {state!r} in {elapsed:.1f} ms")
        print(f"  scores: {state[scores].result()}")
        print(f"  total:  {state[summed].result()}  ->  {state[said].result()}")


if __name__ == "__main__":
    main()
