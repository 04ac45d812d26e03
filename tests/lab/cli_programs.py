"""Programs the command-line tests run (``greenrt-lab ... tests/lab/cli_programs.py:NAME``)."""

from __future__ import annotations

import greenrt


def two_bugs() -> None:
    """Fails in one of two ways depending on which of two tasks appends first."""
    order: list[str] = []

    def worker(name: str) -> None:
        greenrt.checkpoint()
        order.append(name)

    with greenrt.region() as r:
        r.spawn(worker, "a")
        r.spawn(worker, "b")
    if order[0] == "a":
        raise AssertionError("a came first")
    raise ValueError("b came first")


def fine() -> int:
    with greenrt.region() as r:
        t = r.spawn(greenrt.sleep, 1)
    t.join()
    return 1


def cancelled_holder() -> None:
    """A task holding an obligation is cancelled by its region, then the program fails."""

    def holder() -> None:
        ob = greenrt.reserve("lease")
        try:
            greenrt.sleep_forever()
        finally:
            ob.abort("cancelled")

    with greenrt.region() as r:
        t = r.spawn(holder, name="holder")
        greenrt.sleep(1)
        t.cancel()
        greenrt.checkpoint()
    assert greenrt.now() > 5, "too early"


def markup_error() -> None:
    """Fails with a message that rich would read as markup if it were allowed to."""
    greenrt.checkpoint()
    raise AssertionError("[bold red]not markup[/] :smile:")
