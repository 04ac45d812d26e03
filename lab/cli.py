"""The ``greenrt-lab`` command line.

::

    greenrt-lab run module:function --seed N [--record FILE] [--no-strict]
                [--disable ORACLE ...] [--max-steps N] [--self-check]
    greenrt-lab replay FILE            # exit 0 when reproduced exactly (even a failing
                                       # run), 1 and "diverged at step N: ..." otherwise
    greenrt-lab verify FILE            # exit 1 naming the first bad line on tampering
    greenrt-lab show FILE [--task N] [--kind K ...] [--no-checkpoints]
    greenrt-lab explore module:function [--runs N] [--strategy random|pct:D|dfs[:B]|dpor]
                [--seed N] [--inject all|sample:N|last:N] [--inject-tasks PATTERN]
                [--faults KIND,...] [--until T] [--liveness] [--workers K]
                [--corpus DIR] [--record-dir DIR] [--all] [--no-progress]
    greenrt-lab replay TOKEN [--record FILE]   # a replay token (glab1....) also works
    greenrt-lab shrink TOKEN [--max-runs N]    # prints the smaller token
    greenrt-lab timeline FILE --html OUT       # static HTML, one lane per task
    greenrt-lab diff A B                       # first divergence of two trace files

``module:function`` may also be ``path/to/file.py:function``. Exit status of ``run``:
0 when the run is ok (no error, no violation), 1 when it is not; of ``replay``: 0 when
the run was reproduced exactly, 1 on a divergence; of ``verify``: 1 on a bad chain;
of ``explore``: 1 when a run failed; of ``replay TOKEN``: 0 when the run hash matches;
of ``diff``: 0 when the traces are the same, 1 otherwise;
2 for usage errors and unreadable or tampered files given to ``replay``/``show``.
"""

from __future__ import annotations

import argparse
import sys

from .errors import LabError, TraceError


def _cmd_run(a: argparse.Namespace) -> int:
    from . import check_determinism, run
    from .hub import DEFAULT_MAX_STEPS
    from .replay import load_entry

    fn = load_entry(a.entry)
    entry = (a.entry, None)
    kw = dict(seed=a.seed, strict=not a.no_strict, disable=tuple(a.disable or ()),
              max_steps=a.max_steps or DEFAULT_MAX_STEPS, entry=entry)
    res = run(fn, record=a.record, **kw)
    print(res.summary())
    status = 0 if res.ok else 1
    if a.self_check:
        kw.pop("entry")
        diff = check_determinism(fn, runs=2, **kw)
        print("determinism self-check: " + ("same trace twice" if diff is None else diff))
        if diff is not None:
            status = 1
    return status


def _progress_bar(done: int, total: int, fails: int) -> None:
    width = 30
    if total > 0:
        fill = min(width, width * done // total)
        bar = "#" * fill + "." * (width - fill)
        line = f"\r[{bar}] {done}/{total} runs, {fails} failed"
    else:
        line = f"\r{done} runs, {fails} failed"
    sys.stderr.write(line)
    sys.stderr.flush()


def _cmd_explore(a: argparse.Namespace) -> int:
    from .explorer import explore
    from .replay import load_entry

    fn = load_entry(a.entry)
    faults = None
    if a.faults:
        from .faults import FaultPlan

        faults = FaultPlan(kinds=tuple(k for k in a.faults.split(",") if k),
                           until=a.until, liveness=a.liveness)
    runs = None if a.runs == 0 else a.runs
    res = explore(fn, runs=runs, strategy=a.strategy, seed=a.seed, inject=a.inject,
                  inject_tasks=a.inject_tasks, faults=faults, workers=a.workers,
                  corpus=a.corpus, stop_on_failure=not a.all,
                  progress=None if a.no_progress else _progress_bar,
                  disable=tuple(a.disable or ()), strict=not a.no_strict,
                  max_steps=a.max_steps, entry=(a.entry, None), record_dir=a.record_dir)
    if not a.no_progress:
        sys.stderr.write("\n")
    print(res.summary())
    if res.failures:
        f = res.failures[0]
        print(f.summary)
        if f.trace_path:
            print(f"  trace: {f.trace_path}")
        print(f"  shrink: greenrt-lab shrink {f.token}")
    return 0 if res.ok else 1


def _cmd_replay_token(a: argparse.Namespace) -> int:
    from .explorer import replay_token

    rt = replay_token(a.file, record=a.record)
    print(rt.result.summary())
    print("failure: " + (", ".join(rt.signature) if rt.signature else "none"))
    if rt.reproduced:
        print(f"reproduced exactly (run hash {rt.run_hash[:16]})")
        return 0
    print(f"NOT reproduced: run hash {rt.run_hash[:16]} differs from the token's")
    return 1


def _cmd_shrink(a: argparse.Namespace) -> int:
    from .shrinking import shrink

    r = shrink(a.token, max_runs=a.max_runs)
    print(r.summary())
    print(r.token)
    return 0


def _cmd_timeline(a: argparse.Namespace) -> int:
    from .timeline import write_html
    from .trace import read

    t = read(a.file)
    write_html(t, a.html)
    print(f"timeline of {a.file} ({len(t.records)} events) written to {a.html}")
    return 0


def _cmd_diff(a: argparse.Namespace) -> int:
    from .errors import _short
    from .runner import first_difference
    from .trace import read

    ta, tb = read(a.a), read(b := a.b)
    d = first_difference(ta.records, tb.records)
    if d is None:
        print(f"no divergence: {len(ta.records)} identical events "
              f"(final hashes {ta.final_hash[:16]} / {tb.final_hash[:16]})")
        return 0
    step, x, y = d
    print(f"first divergence at step {step}:")
    print(f"  {a.a}: " + ("end of trace" if x is None else _short(x)))
    print(f"  {b}: " + ("end of trace" if y is None else _short(y)))
    return 1


def _cmd_replay(a: argparse.Namespace) -> int:
    from .replay import replay
    from .token import PREFIX

    if a.file.startswith(PREFIX):
        return _cmd_replay_token(a)

    res = replay(a.file)
    if res.divergence is not None:
        print(f"replay of {a.file}: {res.divergence}")
        return 1
    print(f"replay of {a.file}: reproduced {res.stats['events']} events exactly, "
          f"final hash {res.final_hash}")
    print(res.summary())
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from .trace import verify

    try:
        rep = verify(a.file)
    except TraceError as e:
        print(f"{a.file}: INVALID: {e}")
        return 1
    print(f"{a.file}: ok: {rep.records} records, {'keyed (HMAC)' if rep.keyed else 'unkeyed'}"
          f" chain, final hash {rep.final_hash}" + ("" if rep.complete else ", run incomplete"))
    return 0


def _cmd_show(a: argparse.Namespace) -> int:
    from .show import render
    from .trace import read

    t = read(a.file)
    h = t.header
    print(f"# {h.get('entry')} seed={h.get('seed')} strategy={h.get('strategy')} "
          f"strict={h.get('strict')} records={len(t.records)} outcome={t.footer.get('outcome')}")
    kinds = set(a.kind) if a.kind else None
    for line in render(t.records, task=a.task, kinds=kinds, checkpoints=not a.no_checkpoints):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .oracles import ORACLES

    p = argparse.ArgumentParser(prog="greenrt-lab",
                                description="greenrt's deterministic lab")
    p.add_argument("--version", action="version", version=f"greenrt-lab {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run module:function under the lab hub")
    r.add_argument("entry", help="module:function or path/to/file.py:function")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--record", metavar="FILE", help="write the trace file here")
    r.add_argument("--no-strict", action="store_true", help="allow nondeterminism")
    r.add_argument("--disable", action="append", choices=ORACLES, metavar="ORACLE",
                   help=f"turn an oracle off ({', '.join(ORACLES)})")
    r.add_argument("--max-steps", type=int)
    r.add_argument("--self-check", action="store_true",
                   help="also run twice more and compare the traces")
    r.set_defaults(func=_cmd_run)
    rp = sub.add_parser("replay", help="replay a trace file or a replay token exactly")
    rp.add_argument("file", help="a trace file or a replay token (glab1....)")
    rp.add_argument("--record", metavar="FILE", help="token replay: write the trace here")
    rp.set_defaults(func=_cmd_replay)
    v = sub.add_parser("verify", help="check a trace file's hash chain")
    v.add_argument("file")
    v.set_defaults(func=_cmd_verify)
    s = sub.add_parser("show", help="print a per-task timeline of a trace file")
    s.add_argument("file")
    s.add_argument("--task", type=int)
    s.add_argument("--kind", action="append")
    s.add_argument("--no-checkpoints", action="store_true")
    s.set_defaults(func=_cmd_show)
    e = sub.add_parser("explore", help="explore schedules of module:function")
    e.add_argument("entry")
    e.add_argument("--runs", type=int, default=100, help="run budget (0: until exhausted)")
    e.add_argument("--strategy", default=None,
                   help="portfolio (default), random, pct:D, dfs[:BOUND], dpor, dpor:declared")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--inject", help="cancellation injection: all, sample:N, last:N")
    e.add_argument("--inject-tasks", default="*", help="only tasks whose name matches")
    e.add_argument("--faults", help="network faults: comma-separated kinds "
                   "(partition,heal,reset,delay,drop,ioerror)")
    e.add_argument("--until", type=float, default=2.0, help="faults stop at this time")
    e.add_argument("--liveness", action="store_true",
                   help="after --until the program must still reach its goal")
    e.add_argument("--workers", type=int, default=1)
    e.add_argument("--corpus", metavar="DIR", help="regression corpus of replay tokens")
    e.add_argument("--record-dir", metavar="DIR", help="write traces of failing runs here")
    e.add_argument("--all", action="store_true", help="do not stop at the first failure")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--no-strict", action="store_true")
    e.add_argument("--disable", action="append", choices=ORACLES, metavar="ORACLE")
    e.add_argument("--max-steps", type=int, default=200_000)
    e.set_defaults(func=_cmd_explore)
    sh = sub.add_parser("shrink", help="minimize a failing replay token")
    sh.add_argument("token")
    sh.add_argument("--max-runs", type=int, default=300)
    sh.set_defaults(func=_cmd_shrink)
    tl = sub.add_parser("timeline", help="draw a trace file as static HTML")
    tl.add_argument("file")
    tl.add_argument("--html", required=True, metavar="OUT")
    tl.set_defaults(func=_cmd_timeline)
    d = sub.add_parser("diff", help="first divergence between two trace files")
    d.add_argument("a")
    d.add_argument("b")
    d.set_defaults(func=_cmd_diff)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return a.func(a)
    except (LabError, OSError, ValueError) as e:
        print(f"greenrt-lab {a.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
