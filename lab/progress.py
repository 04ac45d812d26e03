"""The command line's progress bar and coloured output (``greenrt-lab``; not core code).

``progress_bar(label, stream)`` returns a context manager whose value is either
``None`` (no bar) or a ``progress(done, total, failures)`` callback, the signature
``lab.explore(progress=)`` and ``lab.shrink(progress=)`` call. A bar is drawn **only
when the stream (stderr) is a terminal**: piped or redirected output, CI logs and
``--no-progress`` get nothing, so a log holds the results and no carriage-return
noise. The bar shows runs done out of the budget, failures so far, the rate (runs/s),
the elapsed time and the ETA (an unbounded budget, ``--runs 0``, shows no ETA). It is
drawn with `rich <https://rich.readthedocs.io>`_ (the ``lab`` extra) and, without it,
as one plain line rewritten in place.

``Output`` prints the results to stdout: through a rich ``Console`` when rich is
installed, which decides whether colour is used (a terminal that supports it; never
when ``NO_COLOR`` is set, when ``TERM=dumb`` or when stdout is not a terminal), plain
writes otherwise. Lines are never wrapped or cropped (a replay token is one long
word that must survive copy and paste), and trace text is never read as markup.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO

ProgressFn = Callable[[int, int, int], None]
REFRESH = 0.1  # seconds between redraws of the bar


def _rich_available() -> bool:
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (``isatty``; false for a closed or odd stream)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def progress_bar(label: str, stream: IO[str] | None = None, *, enabled: bool = True,
                 unit: str = "runs") -> Iterator[ProgressFn | None]:
    """A progress callback drawing on ``stream`` (default ``sys.stderr``) while the
    block runs, or ``None`` when ``enabled`` is false or the stream is not a terminal.
    The bar is left, complete, on its line when the block ends."""
    stream = sys.stderr if stream is None else stream
    if not enabled or not is_terminal(stream):
        yield None
        return
    if _rich_available():
        with _rich_bar(label, stream, unit) as cb:
            yield cb
    else:
        bar = _PlainBar(label, stream, unit)
        try:
            yield bar
        finally:
            bar.close()


@contextlib.contextmanager
def _rich_bar(label: str, stream: IO[str], unit: str) -> Iterator[ProgressFn]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=stream, stderr=stream is sys.stderr)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[fails]} failed"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn()]
    # no refresh thread: the bar is redrawn from the callback, at most every REFRESH s
    with Progress(*columns, console=console, transient=False, auto_refresh=False) as prog:
        task = prog.add_task(label, total=None, fails=0, rate="")
        t0 = time.monotonic()
        last = [0.0]

        def update(done: int, total: int, fails: int) -> None:
            now = time.monotonic()
            dt = now - t0
            rate = f"{done / dt:.1f} {unit}/s" if dt > 0 else ""
            prog.update(task, completed=done, total=total or None, fails=fails, rate=rate)
            if now - last[0] >= REFRESH:
                last[0] = now
                prog.refresh()

        yield update


class _PlainBar:
    """The bar without rich: ``label [#####.....] 40/100 runs, 1 failed, 12.3 runs/s,
    eta 5s`` rewritten with a carriage return."""

    WIDTH = 30

    def __init__(self, label: str, stream: IO[str], unit: str):
        self.label = label
        self.stream = stream
        self.unit = unit
        self.t0 = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, total: int, fails: int) -> None:
        self.stream.write("\r" + format_plain(self.label, done, total, fails,
                                              time.monotonic() - self.t0, self.unit))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def format_plain(label: str, done: int, total: int, fails: int, elapsed: float,
                 unit: str = "runs") -> str:
    """One line of the plain bar (rate and ETA from ``elapsed`` seconds)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"{done}/{total} {unit}" if total > 0 else f"{done} {unit}", f"{fails} failed",
             f"{rate:.1f} {unit}/s"]
    if total > 0 and rate > 0:
        parts.append(f"eta {max(0.0, (total - done) / rate):.0f}s")
    if total > 0:
        fill = min(_PlainBar.WIDTH, _PlainBar.WIDTH * done // total)
        bar = "[" + "#" * fill + "." * (_PlainBar.WIDTH - fill) + "] "
    else:
        bar = ""
    return f"{label} {bar}" + ", ".join(parts)


class Output:
    """Results on stdout, coloured when the terminal supports it (see the module)."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream
        self.console = None
        try:
            from rich.console import Console
        except ImportError:
            return
        self.console = Console(file=stream, highlight=False, soft_wrap=True, markup=False,
                               emoji=False)

    def line(self, text: str, style: str | None = None) -> None:
        """Print ``text`` (a plain string, never markup) in ``style`` (a rich style such
        as ``"bold red"``; ignored without colour)."""
        if self.console is None:
            (self.stream if self.stream is not None else sys.stdout).write(text + "\n")
        else:
            self.console.print(text, style=style)

    def lines(self, text: str, style: str | None = None) -> None:
        for ln in text.splitlines():
            self.line(ln, style)

    @property
    def colour(self) -> bool:
        """Whether colour codes are written (for tests and ``--help``)."""
        return self.console is not None and self.console.color_system is not None
