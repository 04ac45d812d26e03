"""The ``greenrt-lab`` command line.

::

    greenrt-lab run module:function --seed N [--record FILE] [--no-strict]
                [--disable ORACLE ...] [--max-steps N] [--self-check]
    greenrt-lab replay FILE            # exit 0 when reproduced exactly (even a failing
                                       # run), 1 and "diverged at step N: ..." otherwise
    greenrt-lab verify FILE            # exit 1 naming the first bad line on tampering
    greenrt-lab show FILE [--task N] [--kind K ...] [--no-checkpoints]

``module:function`` may also be ``path/to/file.py:function``. Exit status of ``run``:
0 when the run is ok (no error, no violation), 1 when it is not; of ``replay``: 0 when
the run was reproduced exactly, 1 on a divergence; of ``verify``: 1 on a bad chain;
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


def _cmd_replay(a: argparse.Namespace) -> int:
    from .replay import replay

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
    rp = sub.add_parser("replay", help="replay a trace file exactly")
    rp.add_argument("file")
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
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return a.func(a)
    except (LabError, OSError) as e:
        print(f"greenrt-lab {a.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
