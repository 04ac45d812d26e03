"""Dependency analysis of a tracked run: footprints, independence, vector clocks,
races and the interleaving-class fingerprint (used by DPOR and ``classes``)."""

from __future__ import annotations

import hashlib

#: The footprint key of everything the lab cannot see.
WORLD = ("world",)


def _merge_fp(fp: list, world: bool = False) -> dict:
    """A step's accesses as ``{key: write}``. With ``world`` (the default ``dpor``), a
    step that touched nothing the lab knows — no runtime object, no declared name, no
    spawn; only its own cancellation state — is assumed to touch *unknown* state:
    it writes ``WORLD``, so it is dependent on every other such step. A step that
    reports accesses is taken at its word (the HB witness checks that trust)."""
    d: dict = {}
    for k, w in fp:
        if w:
            d[k] = True
        elif k not in d:
            d[k] = False
    if world:
        for k in d:
            if type(k) is not tuple or k[0] != "cancel":
                return d
        d[WORLD] = True
    return d


def independent(a: dict, ka: int, b: dict, kb: int) -> bool:
    """Whether two footprints (``{key: write}``) commute. Integer keys at or beyond
    ``ka``/``kb`` name objects first seen in that step (numbered per run), so two
    such sets are compared conservatively: any fresh object on both sides is a
    dependency."""
    if len(a) > len(b):
        a, ka, b, kb = b, kb, a, ka
    fresh_a = fresh_b = False
    for k, w in a.items():
        if type(k) is int and k >= ka:
            fresh_a = True
            continue
        wb = b.get(k)
        if wb is not None and (w or wb):
            return False
    for k in b:
        if type(k) is int and k >= kb:
            fresh_b = True
            break
    return not (fresh_a and fresh_b)


_NO_ACCESS = (None, ())


def _record(acc: dict, fp: dict, j: int) -> None:
    """After step ``j``: the last writer of each key it wrote, the reads since then."""
    for key, wr in fp.items():
        if wr:
            acc[key] = [j, []]
        else:
            e = acc.get(key)
            if e is None:
                acc[key] = [None, [j]]
            else:
                e[1].append(j)


def fingerprint(sched: list) -> str:
    """The class fingerprint of a run (``analyse``'s first result) without the vector
    clocks and races: what sampled runs need, at a fraction of the cost.

    The same computation as ``analyse`` with ``world=False``, with ``_record``
    inlined and ``_merge_fp`` called only for steps with several accesses (it runs
    once per sampled run, over every step)."""
    acc: dict = {}
    local: dict[int, int] = {}
    names: list[tuple[int, int]] = []
    tasks: list[int] = []
    edges: set = set()
    add_edge = edges.add
    for j, s in enumerate(sched):
        p = s.task
        tasks.append(p)
        n = local.get(p, 0)
        local[p] = n + 1
        name = (p, n)
        names.append(name)
        items = s.fp
        if len(items) > 1:  # one access (most steps: the checkpoint's) is merged already
            items = _merge_fp(items).items()
        for key, wr in items:
            e = acc.get(key)
            if e is None:
                if wr:
                    acc[key] = [j, []]
                else:
                    acc[key] = [None, [j]]
                continue
            lw, reads = e
            if lw is not None and tasks[lw] != p:
                add_edge((names[lw], name))
            if wr:
                for i in reads:
                    if tasks[i] != p:
                        add_edge((names[i], name))
                acc[key] = [j, []]
            else:
                reads.append(j)
    h = hashlib.sha256(repr((sorted(edges), sorted(local.items()))).encode())
    return h.hexdigest()[:20]


def analyse(sched: list, clocks_out: list | None = None, world: bool = False,
            ) -> tuple[str, list[tuple[int, int, dict]]]:
    """Class fingerprint and races of a tracked run.

    Returns ``(fingerprint, races)`` where each race ``(i, j, clock_j)`` says step
    ``i`` and step ``j`` (by different tasks) are dependent and not ordered by
    happens-before through anything else (program order, earlier dependencies,
    wake-ups and spawns); ``clock_j`` is step ``j``'s vector clock before it ran.
    """
    clocks: dict[int, dict] = {}
    pending: dict[int, dict] = {}
    acc: dict = {}
    step_clock: list[dict] = []
    local: dict[int, int] = {}
    names: list[tuple[int, int]] = []
    edges: set = set()
    races: list = []
    for j, s in enumerate(sched):
        p = s.task
        c = clocks.get(p)
        c = dict(c) if c else {}
        w = pending.pop(p, None)
        if w:
            for t, v in w.items():
                if c.get(t, -1) < v:
                    c[t] = v
        n = local.get(p, 0)
        local[p] = n + 1
        names.append((p, n))
        fp = _merge_fp(s.fp, world)
        before = dict(c)
        deps: list[int] = []
        for key, wr in fp.items():
            lw, reads = acc.get(key, _NO_ACCESS)
            cands = [] if lw is None else [lw]
            if wr:
                cands.extend(reads)
            for i in cands:
                q = sched[i].task
                if q == p:
                    continue
                deps.append(i)
                if before.get(q, -1) < i:
                    races.append((i, j, before))
        for i in deps:
            edges.add((names[i], names[j]))
            for t, v in step_clock[i].items():
                if c.get(t, -1) < v:
                    c[t] = v
        c[p] = j
        step_clock.append(c)
        clocks[p] = c
        for t in s.woke:
            pw = pending.get(t)
            if pw is None:
                pending[t] = dict(c)
            else:
                for x, v in c.items():
                    if pw.get(x, -1) < v:
                        pw[x] = v
        _record(acc, fp, j)
    if clocks_out is not None:
        clocks_out.extend(step_clock)
    h = hashlib.sha256(repr((sorted(edges), sorted(local.items()))).encode())
    return h.hexdigest()[:20], races
