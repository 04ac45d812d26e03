"""greenrt's one logger tree.

Every logger of the runtime and its protocols is a child of ``greenrt``: the core
logs on ``greenrt`` itself, a protocol on ``greenrt.<protocol>`` (``greenrt.http``,
``greenrt.redis``, ...; ``logging.getLogger("greenrt.http")`` is all a protocol
needs). The top logger carries a ``NullHandler``, so nothing greenrt logs reaches
stderr through Python's last-resort handler: like any library, greenrt is silent
until the application configures logging (``logging.basicConfig()``, a handler on
``greenrt``, ...). The runtime never prints.

What is logged on ``greenrt``: failures nobody else can see (detached places) —
a race loser's exception after the winner was decided, an exception raised by a
task done-callback or by an obligation's ``on_abort`` hook during leak handling, an
obligation leak under the ``log`` policy, an abandoned task, a blocked hub (the
watchdog) — each once, at WARNING or ERROR; and the task dump on the dump signal
(``run(..., dump_signal=)``).
"""

from __future__ import annotations

import logging

logger = logging.getLogger("greenrt")
if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
    logger.addHandler(logging.NullHandler())


def get_logger(part: str | None = None) -> logging.Logger:
    """``greenrt``'s logger, or the child for ``part`` (``get_logger("http")`` is
    ``greenrt.http``). Not a checkpoint."""
    return logger if not part else logger.getChild(part)


def log_detached(msg: str, exc: BaseException, *args: object) -> None:
    """Log an exception that has nobody to propagate to (once, with its traceback)."""
    logger.error(msg, *args, exc_info=(type(exc), exc, exc.__traceback__))
