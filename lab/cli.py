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
    greenrt-lab shrink TOKEN [--max-runs N] [--no-progress]   # prints the smaller token
    greenrt-lab timeline FILE --html OUT [--no-replay]       # static HTML, one lane per task
    greenrt-lab diff A B                       # first divergence of two trace files

Every subcommand has ``--help`` with a description, the defaults and examples
(formatted by ``rich-argparse`` when the ``lab`` extra is installed, plain argparse
otherwise). ``explore`` and ``shrink`` draw a progress bar (runs done, failures, rate,
elapsed time, ETA) only when stderr is a terminal (``lab.progress``); results go to
stdout, coloured only when it is a terminal that supports colour and ``NO_COLOR`` is
not set. ``explore --all`` keeps exploring after a failure and prints the failures
grouped by signature, one replay token and a count per group (``lab.failure_groups``).

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
import textwrap

from .errors import LabError, TraceError
from .progress import Output, progress_bar

#: what stdout gets: set by ``main`` (a rich Console when rich is installed)
_out = Output()


def _cmd_run(a: argparse.Namespace) -> int:
    from . import check_determinism, run
    from .replay import load_entry

    fn = load_entry(a.entry)
    entry = (a.entry, None)
    kw = dict(seed=a.seed, strict=not a.no_strict, disable=tuple(a.disable or ()),
              max_steps=a.max_steps, entry=entry)
    res = run(fn, record=a.record, **kw)
    _out.lines(res.summary(), "green" if res.ok else "bold red")
    status = 0 if res.ok else 1
    if a.self_check:
        kw.pop("entry")
        diff = check_determinism(fn, runs=2, **kw)
        _out.line("determinism self-check: " + ("same trace twice" if diff is None else diff),
                  "green" if diff is None else "bold red")
        if diff is not None:
            status = 1
    return status


def _print_failure_commands(token: str, trace_path: str | None) -> None:
    if trace_path:
        _out.line(f"  trace: {trace_path}")
    _out.line(f"  shrink: greenrt-lab shrink {token}", "cyan")


def _cmd_explore(a: argparse.Namespace) -> int:
    from .explorer import explore
    from .failure_groups import group_failures
    from .replay import load_entry

    fn = load_entry(a.entry)
    faults = None
    if a.faults:
        from .faults import FaultPlan

        faults = FaultPlan(kinds=tuple(k for k in a.faults.split(",") if k),
                           until=a.until, liveness=a.liveness)
    runs = None if a.runs == 0 else a.runs
    with progress_bar("explore", enabled=not a.no_progress) as bar:
        res = explore(fn, runs=runs, strategy=a.strategy, seed=a.seed, inject=a.inject,
                      inject_tasks=a.inject_tasks, faults=faults, workers=a.workers,
                      corpus=a.corpus, stop_on_failure=not a.all, progress=bar,
                      disable=tuple(a.disable or ()), strict=not a.no_strict,
                      max_steps=a.max_steps, entry=(a.entry, None), record_dir=a.record_dir)
    style = "green" if res.ok else "bold red"
    if not a.all:
        text = res.summary().splitlines()
        _out.line(text[0], style)
        for ln in text[1:]:
            _out.line(ln, "cyan" if "greenrt-lab replay" in ln else None)
        if res.failures:
            f = res.failures[0]
            _out.lines(f.summary)
            _print_failure_commands(f.token, f.trace_path)
        return 0 if res.ok else 1
    text = res.summary(failures=False).splitlines()
    _out.line(text[0], style)
    _out.lines("\n".join(text[1:]))
    groups = group_failures(res.failures, res.found_by)
    if groups:
        kinds = "failure" if len(groups) == 1 else "failures"
        _out.line(f"{len(groups)} distinct {kinds} in {len(res.failures)} failing runs "
                  f"(grouped by failure signature; one token each):", "bold")
        for g in groups:
            for i, ln in enumerate(g.describe()):
                _out.line(ln, "bold red" if i == 0 else
                          "cyan" if "greenrt-lab " in ln else None)
    return 0 if res.ok else 1


def _cmd_replay_token(a: argparse.Namespace) -> int:
    from .explorer import replay_token

    rt = replay_token(a.file, record=a.record)
    _out.lines(rt.result.summary())
    _out.line("failure: " + (", ".join(rt.signature) if rt.signature else "none"))
    if rt.reproduced:
        _out.line(f"reproduced exactly (run hash {rt.run_hash[:16]})", "green")
        return 0
    _out.line(f"NOT reproduced: run hash {rt.run_hash[:16]} differs from the token's", "bold red")
    return 1


def _cmd_shrink(a: argparse.Namespace) -> int:
    from .shrinking import shrink

    with progress_bar("shrink", enabled=not a.no_progress) as bar:
        r = shrink(a.token, max_runs=a.max_runs, progress=bar)
    _out.line(r.summary(), "green")
    _out.line(r.token, "cyan")
    return 0


def _cmd_timeline(a: argparse.Namespace) -> int:
    from .timeline import build
    from .trace import read

    t = read(a.file)
    tl = build(t, replay=not a.no_replay)
    with open(a.html, "w", encoding="utf-8") as f:
        f.write(tl.page)
    verdict = "ok" if tl.verdict.ok else "FAILED" + (
        f" at step {tl.verdict.failing_step}" if tl.verdict.failing_step is not None else "")
    _out.line(f"timeline of {a.file} ({len(t.records)} events, {verdict}, "
              f"{tl.sources} with a source line) written to {a.html}",
              "green" if tl.verdict.ok else "bold red")
    for n in tl.notes:
        _out.line(f"  note: {n}", "yellow")
    return 0


def _cmd_diff(a: argparse.Namespace) -> int:
    from .errors import _short
    from .runner import first_difference
    from .trace import read

    ta, tb = read(a.a), read(b := a.b)
    d = first_difference(ta.records, tb.records)
    if d is None:
        _out.line(f"no divergence: {len(ta.records)} identical events "
                  f"(final hashes {ta.final_hash[:16]} / {tb.final_hash[:16]})", "green")
        return 0
    step, x, y = d
    _out.line(f"first divergence at step {step}:", "bold red")
    _out.line(f"  {a.a}: " + ("end of trace" if x is None else _short(x)))
    _out.line(f"  {b}: " + ("end of trace" if y is None else _short(y)))
    return 1


def _cmd_replay(a: argparse.Namespace) -> int:
    from .replay import replay
    from .token import PREFIX

    if a.file.startswith(PREFIX):
        return _cmd_replay_token(a)

    res = replay(a.file)
    if res.divergence is not None:
        _out.line(f"replay of {a.file}: {res.divergence}", "bold red")
        return 1
    _out.line(f"replay of {a.file}: reproduced {res.stats['events']} events exactly, "
              f"final hash {res.final_hash}", "green")
    _out.lines(res.summary())
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from .trace import verify

    try:
        rep = verify(a.file)
    except TraceError as e:
        _out.line(f"{a.file}: INVALID: {e}", "bold red")
        return 1
    _out.line(f"{a.file}: ok: {rep.records} records, {'keyed (HMAC)' if rep.keyed else 'unkeyed'}"
              f" chain, final hash {rep.final_hash}" + ("" if rep.complete else ", run incomplete"),
              "green")
    return 0


def _cmd_show(a: argparse.Namespace) -> int:
    from .show import render
    from .trace import read

    t = read(a.file)
    h = t.header
    _out.line(f"# {h.get('entry')} seed={h.get('seed')} strategy={h.get('strategy')} "
              f"strict={h.get('strict')} records={len(t.records)} "
              f"outcome={t.footer.get('outcome')}", "bold")
    kinds = set(a.kind) if a.kind else None
    for line in render(t.records, task=a.task, kinds=kinds, checkpoints=not a.no_checkpoints):
        _out.line(line)
    return 0


# -- the parser -----------------------------------------------------------------------


def _formatter():
    """rich-argparse's formatter (keeping descriptions and examples as written) when
    it is installed, else argparse's own."""
    try:
        from rich_argparse import RawDescriptionRichHelpFormatter
    except ImportError:
        return argparse.RawDescriptionHelpFormatter
    return RawDescriptionRichHelpFormatter


def _wrap(text: str) -> str:
    return textwrap.fill(text, 78, break_on_hyphens=False)


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {ln}" for ln in lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``greenrt-lab`` parser: every subcommand with a description, its defaults in
    each option's help (``%(default)s``) and examples in its epilog."""
    from . import __version__
    from .explorer.job import EXPLORE_MAX_STEPS
    from .hub import DEFAULT_MAX_STEPS
    from .oracles import ORACLES

    fmt = _formatter()
    p = argparse.ArgumentParser(
        prog="greenrt-lab", formatter_class=fmt,
        description=_wrap("greenrt's deterministic lab: run a program under virtual time and a "
                    "seeded schedule, record and replay its trace exactly, explore many "
                    "schedules for concurrency bugs, shrink and draw what fails."),
        epilog=_examples(
            "greenrt-lab run examples/lab_lost_update.py:transfer_program --seed 3 "
            "--record run.jsonl",
            "greenrt-lab explore mypkg.tests:program --runs 500",
            "greenrt-lab replay glab1.eNpd...",
            "greenrt-lab timeline run.jsonl --html run.html",
            "greenrt-lab COMMAND --help     (each command's options, defaults, examples)"))
    p.add_argument("--version", action="version", version=f"greenrt-lab {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    entry_help = ("the program: module:function (importable from sys.path; from a "
                  "project folder use PYTHONPATH=.) or path/to/file.py:function")
    oracle_help = f"turn an oracle off; repeatable ({', '.join(ORACLES)})"

    def cmd(name: str, help: str, description: str, examples: list[str], func):
        sp = sub.add_parser(name, help=help, description=_wrap(description),
                            epilog=_examples(*examples), formatter_class=fmt)
        sp.set_defaults(func=func)
        return sp

    r = cmd("run", "run a program once under the lab hub",
            "Run the program once under the lab hub with one seed: virtual time, a seeded "
            "schedule, the oracles checked afterwards. Prints the outcome, the oracle "
            "verdicts and the trace's final hash. Exit status 0 when the run is ok (no "
            "error, no violation), 1 when it is not.",
            ["greenrt-lab run examples/lab_lost_update.py:transfer_program --seed 3",
             "greenrt-lab run mypkg.jobs:main --seed 7 --record run.jsonl --self-check"],
            _cmd_run)
    r.add_argument("entry", help=entry_help)
    r.add_argument("--seed", type=int, default=0, metavar="N",
                   help="the seed of the schedule's choices (default: %(default)s)")
    r.add_argument("--record", metavar="FILE",
                   help="write the hash-chained trace here (default: not written)")
    r.add_argument("--no-strict", action="store_true",
                   help="allow nondeterminism (wall clock, real I/O, threads) instead of "
                        "failing on it (default: strict)")
    r.add_argument("--disable", action="append", choices=ORACLES, metavar="ORACLE",
                   help=oracle_help + " (default: all on)")
    r.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, metavar="N",
                   help="halt the run after this many scheduling steps (default: %(default)s)")
    r.add_argument("--self-check", action="store_true",
                   help="also run twice more and compare the traces (default: off)")
    rp = cmd("replay", "replay a trace file or a replay token exactly",
             "Replay a recorded run exactly: a trace file (verified first, then every "
             "event compared with the recorded one) or a replay token printed by explore "
             "or shrink. Exit status 0 when the run is reproduced (even a failing run), 1 "
             "and the first divergence otherwise, 2 for an unreadable or tampered file.",
             ["greenrt-lab replay run.jsonl",
              "greenrt-lab replay glab1.eNpd... --record failing.jsonl"],
             _cmd_replay)
    rp.add_argument("file", help="a trace file or a replay token (glab1....)")
    rp.add_argument("--record", metavar="FILE",
                    help="token replay: write the trace here (default: not written)")
    v = cmd("verify", "check a trace file's hash chain",
            "Check a trace file's SHA-256 hash chain (HMAC when GREENRT_LAB_KEY is set) "
            "without running anything. Exit status 1 naming the first bad line.",
            ["greenrt-lab verify run.jsonl"], _cmd_verify)
    v.add_argument("file", help="the trace file")
    s = cmd("show", "print a per-task timeline of a trace file",
            "Print the events of a trace file, one line each, with a column per task "
            "showing which tasks are alive and which one acts.",
            ["greenrt-lab show run.jsonl --no-checkpoints",
             "greenrt-lab show run.jsonl --task 2 --kind cancel.request --kind cancel.drain"],
            _cmd_show)
    s.add_argument("file", help="the trace file")
    s.add_argument("--task", type=int, metavar="N",
                   help="only the events of task N (default: every task)")
    s.add_argument("--kind", action="append", metavar="KIND",
                   help="only events of this kind; repeatable (default: every kind)")
    s.add_argument("--no-checkpoints", action="store_true",
                   help="hide checkpoint and switch events (default: shown)")
    e = cmd("explore", "explore many schedules of a program for failures",
            "Run the program under many schedules (a strategy or the portfolio) and "
            "report what fails, with a replay token per failure. Stops at the first "
            "failure unless --all. A progress bar (runs, failures, rate, ETA) is drawn "
            "on stderr when it is a terminal. Exit status 1 when a run failed.",
            ["greenrt-lab explore tests/programs.py:transfer --runs 500",
             "greenrt-lab explore mypkg.jobs:main --strategy dpor --runs 0",
             "greenrt-lab explore mypkg.jobs:main --all --workers 2 --record-dir traces/",
             "greenrt-lab explore mypkg.net:client --faults partition,reset --liveness"],
            _cmd_explore)
    e.add_argument("entry", help=entry_help)
    e.add_argument("--runs", type=int, default=100, metavar="N",
                   help="run budget; 0: until a DFS/DPOR tree is exhausted "
                        "(default: %(default)s)")
    e.add_argument("--strategy", default=None,
                   help="portfolio, random, pct:D, dfs[:BOUND], dpor, dpor:declared "
                        "(default: portfolio)")
    e.add_argument("--seed", type=int, default=0, metavar="N",
                   help="the exploration's seed (default: %(default)s)")
    e.add_argument("--inject", metavar="HOW",
                   help="cancellation injection: all, sample:N, last:N (default: none)")
    e.add_argument("--inject-tasks", default="*", metavar="PATTERN",
                   help="inject only into tasks whose name matches (default: %(default)s)")
    e.add_argument("--faults", metavar="KINDS",
                   help="network faults, comma-separated: partition,heal,reset,delay,drop,"
                        "ioerror (default: none)")
    e.add_argument("--until", type=float, default=2.0, metavar="T",
                   help="faults stop at this virtual time (default: %(default)s)")
    e.add_argument("--liveness", action="store_true",
                   help="after --until the program must still reach its goal (default: off)")
    e.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes for the runs; same results for any number "
                        "(default: %(default)s)")
    e.add_argument("--corpus", metavar="DIR",
                   help="regression corpus of replay tokens: replayed first, failures "
                        "saved (default: none)")
    e.add_argument("--record-dir", metavar="DIR",
                   help="write the traces of failing runs here (default: not written)")
    e.add_argument("--all", action="store_true",
                   help="do not stop at the first failure; print the failures grouped by "
                        "signature, one token and a count each (default: stop)")
    e.add_argument("--no-progress", action="store_true",
                   help="no progress bar even on a terminal (default: a bar on a terminal)")
    e.add_argument("--no-strict", action="store_true",
                   help="allow nondeterminism (default: strict)")
    e.add_argument("--disable", action="append", choices=ORACLES, metavar="ORACLE",
                   help=oracle_help + " (default: all on)")
    e.add_argument("--max-steps", type=int, default=EXPLORE_MAX_STEPS, metavar="N",
                   help="halt a run after this many scheduling steps (default: %(default)s)")
    sh = cmd("shrink", "minimize a failing replay token",
             "Re-run edited versions of a failing token's schedule and keep the smallest "
             "that fails the same way (fewer preemptions, then fewer steps). Prints the "
             "summary and, on the last line, the smaller token.",
             ["greenrt-lab shrink glab1.eNpd...",
              "greenrt-lab shrink glab1.eNpd... --max-runs 1000 --no-progress"],
             _cmd_shrink)
    sh.add_argument("token", help="a replay token (glab1....)")
    sh.add_argument("--max-runs", type=int, default=300, metavar="N",
                    help="run budget (default: %(default)s)")
    sh.add_argument("--no-progress", action="store_true",
                    help="no progress bar even on a terminal (default: a bar on a terminal)")
    tl = cmd("timeline", "draw a trace file as static HTML",
             "Draw a trace as one static HTML page (no script): a lane per task with "
             "its running intervals, checkpoints, cancellation and obligation events, a "
             "step axis, the verdict and the failing step. The trace is replayed once to "
             "learn each step's source line (shown on hover) and to re-check the oracles; "
             "--no-replay skips that.",
             ["greenrt-lab timeline run.jsonl --html run.html",
              "greenrt-lab timeline run.jsonl --html run.html --no-replay"],
             _cmd_timeline)
    tl.add_argument("file", help="the trace file")
    tl.add_argument("--html", required=True, metavar="OUT", help="the page to write (required)")
    tl.add_argument("--no-replay", action="store_true",
                    help="do not replay: no source lines, verdict from the trace alone "
                         "(default: replay once)")
    d = cmd("diff", "first divergence between two trace files",
            "Compare two trace files event by event and print the first that differs. "
            "Exit status 0 when they are the same, 1 otherwise.",
            ["greenrt-lab diff good.jsonl bad.jsonl"], _cmd_diff)
    d.add_argument("a", help="the first trace file")
    d.add_argument("b", help="the second trace file")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    global _out
    _out = Output()
    try:
        return a.func(a)
    except (LabError, OSError, ValueError) as e:
        Output(sys.stderr).line(f"greenrt-lab {a.cmd}: {e}", "bold red")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
