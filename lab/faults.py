"""Fault injection on the simulated network, drawn from the run's choice stream.

``FaultPlan`` describes what may go wrong; ``lab.explore(..., faults=plan)`` (and a
replay token, which stores the plan) installs it in every run. From virtual time
``start`` on, every ``every`` seconds until ``until``, a *fault tick* asks the choice
stream ``choose("fault", k + 1)`` among "nothing" and the enabled kinds:

==============  ================================================================
``partition``   cut two hosts apart (``lab.net.partition``; a pair chosen by
                ``fault.pair``) until a later ``heal`` tick or the end of faults
``heal``        remove every cut
``reset``       reset every connection between a chosen pair of hosts
``delay``       a latency spike: ``spike`` extra seconds on every new segment
                until the next tick
``drop``        a datagram-loss burst: UDP datagrams are lost with probability
                ``drop_rate`` until the next tick
``ioerror``     the next send or receive on a chosen open stream fails with
                ``OSError(EIO)`` (the stream breaks, as a real I/O error breaks it)
==============  ================================================================

Hosts are those the program uses (the default host, TCP listeners and connections,
and hosts that bound a UDP socket or were sent a datagram), in sorted order, so
every decision is a plain index into a deterministic list and is replayed exactly.

**Liveness.** With ``liveness=True`` the faults stop at ``until``: every cut heals,
spikes and bursts end, and the run must reach its goal — the main task returns
normally (and ``goal(value)`` holds, if given to ``explore``) — within ``grace``
virtual seconds; ``explore`` sets ``max_time = until + grace``, so a program that
never recovers halts with ``time_limit`` and fails. Without liveness, ticks also stop
at ``until`` (so a deadlocked program is still reported as a deadlock).

Fault timers are the lab's (``call_at_unowned``): they do not count against any
region's quiescence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("partition", "heal", "reset", "delay", "drop", "ioerror")


@dataclass
class FaultPlan:
    """What can fail, how often and until when (virtual seconds)."""

    kinds: tuple[str, ...] = ("partition", "heal", "reset", "delay")
    every: float = 0.05
    start: float = 0.0
    until: float = 2.0
    spike: float = 0.2
    drop_rate: float = 0.5
    liveness: bool = False
    grace: float = 30.0
    stats: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.kinds = tuple(self.kinds)
        for k in self.kinds:
            if k not in KINDS:
                raise ValueError(f"unknown fault kind {k!r} ({', '.join(KINDS)})")
        if not (self.every > 0 and self.until >= self.start >= 0 and self.grace > 0
                and self.spike >= 0 and 0 <= self.drop_rate <= 1):
            raise ValueError("fault plan: every > 0, 0 <= start <= until, grace > 0, "
                             "spike >= 0, 0 <= drop_rate <= 1")
        if (self.until - self.start) / self.every > 1_000_000:
            raise ValueError("fault plan has more than 1,000,000 ticks")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("stats")
        d["kinds"] = list(self.kinds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaultPlan:
        allowed = {"kinds", "every", "start", "until", "spike", "drop_rate", "liveness", "grace"}
        return cls(**{k: v for k, v in d.items() if k in allowed})

    def setup(self, hub) -> None:
        """Install the plan on a lab hub before the run starts."""
        _Ticker(self, hub).arm(self.start)


class _Ticker:
    def __init__(self, plan: FaultPlan, hub):
        self.plan = plan
        self.hub = hub
        self.ticks = 0

    def arm(self, at: float) -> None:
        if at < self.plan.until:
            self.hub.call_at_unowned(at, self.tick)
        else:
            self.hub.call_at_unowned(self.plan.until, self.stop)

    def _hosts(self, net) -> list[str]:
        hs = {h for h, _ in net._listeners if isinstance(h, str)}
        hs.add(net.config.default_host)  # where code runs unless lab.net.host() says so
        for c in net._conns:
            hs.add(c.client.host)
            hs.add(c.server.host)
        hs.update(net.udp_hosts)  # a UDP-only program is partitionable too
        return sorted(hs)

    def _pair(self, net) -> tuple[str, str] | None:
        hs = self._hosts(net)
        if len(hs) < 2:
            return None
        pairs = [(a, b) for i, a in enumerate(hs) for b in hs[i + 1:]]
        return pairs[self.hub.choose("fault.pair", len(pairs))]

    def tick(self) -> None:
        hub = self.hub
        plan = self.plan
        net = hub.network
        net.extra_delay = 0.0
        net.drop_boost = 0.0
        self.ticks += 1
        k = hub.choose("fault", len(plan.kinds) + 1)
        if k:
            kind = plan.kinds[k - 1]
            did = None
            if kind == "partition":
                p = self._pair(net)
                if p is not None:
                    net.partition(p[0], p[1])
                    did = p
            elif kind == "heal":
                if net._cuts:
                    net.heal()
                    did = True
            elif kind == "reset":
                p = self._pair(net)
                if p is not None:
                    did = net.reset(p[0], p[1])
            elif kind == "delay":
                net.extra_delay = plan.spike
                did = plan.spike
            elif kind == "drop":
                net.drop_boost = plan.drop_rate
                did = plan.drop_rate
            elif kind == "ioerror":
                streams = [s for c in net._conns if not c.dead
                           for s in (c.client, c.server) if not s._closed]
                if streams:
                    s = streams[hub.choose("fault.stream", len(streams))]
                    s._io_error = "lab.faults"
                    did = s._lab_label()
            if did is not None and hub._tracing:
                hub._emit("lab.fault", None, None, kind=kind, what=str(did))
        self.arm(hub.now() + plan.every)

    def stop(self) -> None:
        hub = self.hub
        net = hub.network
        net.extra_delay = 0.0
        net.drop_boost = 0.0
        if net._cuts:
            net.heal()
        if hub._tracing:
            hub._emit("lab.fault", None, None, kind="stop", what="faults end",
                      liveness=self.plan.liveness)
