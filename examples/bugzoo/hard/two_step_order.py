"""Hard zoo: an ordering bug of depth 2 among many steps.

``a`` publishes a config in two steps (``a`` sets ``staged`` at its step ``S``,
``committed`` at its last); ``b`` reads it at its step ``S``. The bug shows only when
``b``'s read falls *between* ``a``'s two writes: ``b`` must run its ``S`` steps after
``a`` staged (one ordering constraint) and before ``a`` committed (a second one)
while noise tasks keep the scheduler busy. PCT of depth 2 finds it with probability
about ``1/(n·k)``; uniform random only when the interleaving happens to line up.
"""

from __future__ import annotations

import greenrt
import greenrt.lab as lab

NOISE = 5
S = 12
GAP = 1


def main() -> None:
    cfg = lab.shared({"staged": False, "committed": False}, "config")

    def a() -> None:
        for _ in range(S):
            greenrt.checkpoint()
        cfg["staged"] = True
        for _ in range(GAP):
            greenrt.checkpoint()
        cfg["committed"] = True

    def b() -> None:
        for _ in range(S + GAP):
            greenrt.checkpoint()
        assert not (cfg["staged"] and not cfg["committed"]), "read a half-published config"

    def noise() -> None:
        for _ in range(2 * S):
            greenrt.checkpoint()

    with greenrt.region(name="publish") as r:
        r.spawn(a, name="a")
        r.spawn(b, name="b")
        for i in range(NOISE):
            r.spawn(noise, name=f"noise{i}")
