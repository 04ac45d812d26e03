"""Run every fuzz target for a bounded time (CI's fuzz step).

    .venv/bin/python fuzz/run_bounded.py                 # every target, 10 s each
    .venv/bin/python fuzz/run_bounded.py --time 60 --target resp
    .venv/bin/python fuzz/run_bounded.py --no-atheris --runs 50000 --seed 7

With atheris importable, each target runs under libFuzzer in a subprocess for
``--time`` seconds (or ``--runs`` executions) with libFuzzer's ``-seed`` fixed by
``--seed``, its seed corpus read from ``fuzz/<CORPUS>`` and new inputs written to a
scratch directory (the checked-in corpus is never modified; ``--keep DIR`` keeps the
scratch corpus). A crash is written to ``fuzz/regressions/<target>/``: fix the bug,
commit the file, and ``tests/test_fuzz_corpora.py`` replays it in every later suite
run. Without atheris (or with ``--no-atheris``) the fallback replays the corpus and
then applies seeded random mutations in-process until the time or run budget is
spent; a finding is written to the same place and the seed and index printed, so it
reproduces exactly.

``make test`` runs this for a few seconds per target before the pytest suite
(``FUZZ_SECONDS``, default 3; ``FUZZ_SECONDS=0`` skips it).

Exit status: 0 if no target found anything, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _harness  # noqa: E402


def have_atheris() -> bool:
    return importlib.util.find_spec("atheris") is not None


def run_atheris(path: pathlib.Path, seconds: float, runs: int | None, keep: str | None,
                seed: int) -> bool:
    mod = _harness.load_target(path)
    seeds = _harness.corpus_dir(mod)
    found = _harness.regressions_dir(path)
    found.mkdir(parents=True, exist_ok=True)
    scratch = pathlib.Path(keep) / path.stem if keep else pathlib.Path(tempfile.mkdtemp())
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        cmd = [sys.executable, str(path), str(scratch), str(seeds),
               f"-max_total_time={max(1, int(seconds))}",
               f"-artifact_prefix={found}/", f"-seed={seed + 1}", "-print_final_stats=1"]
        if runs is not None:
            cmd.append(f"-runs={runs}")
        proc = subprocess.run(cmd, cwd=_harness.ROOT, capture_output=True, text=True)
        lines = proc.stderr.splitlines()
        done = next((ln for ln in reversed(lines) if ln.startswith("Done ")), "")
        if proc.returncode == 0:
            print(f"[{path.stem}] atheris: {done or 'finished'}, no findings")
        else:
            print(f"[{path.stem}] atheris exit {proc.returncode}: FINDING saved under {found}")
            print("\n".join(lines[-40:]))
        return proc.returncode == 0
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
        if found.is_dir() and not any(found.iterdir()):
            found.rmdir()


def run_fallback(path: pathlib.Path, seconds: float, runs: int | None, seed: int) -> bool:
    mod = _harness.load_target(path)
    deadline = time.monotonic() + seconds
    n = 0
    limit = runs if runs is not None else 10**12
    for name, data in _harness.inputs(mod, seed, limit):
        try:
            _harness.run_one(mod, data)
        except Exception:  # a finding: anything TestOneInput did not swallow
            found = _harness.regressions_dir(path)
            found.mkdir(parents=True, exist_ok=True)
            out = found / f"crash-seed{seed}-{n}"
            out.write_bytes(data)
            print(f"[{path.stem}] FINDING on {name} (saved to {out}):")
            traceback.print_exc()
            return False
        n += 1
        if time.monotonic() > deadline:
            break
    print(f"[{path.stem}] fallback fuzzer: {n} inputs, seed {seed}, no findings")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=10.0, help="seconds per target")
    ap.add_argument("--runs", type=int, default=None, help="max executions per target")
    ap.add_argument("--target", action="append", help="only targets whose name contains this")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fallback mutator")
    ap.add_argument("--no-atheris", action="store_true", help="use the in-process fallback")
    ap.add_argument("--keep", help="keep atheris' scratch corpora under this directory")
    args = ap.parse_args(argv)
    paths = _harness.targets()
    if args.target:
        paths = [p for p in paths if any(t in p.stem for t in args.target)]
    if not paths:
        print("no fuzz targets selected", file=sys.stderr)
        return 1
    use_atheris = have_atheris() and not args.no_atheris
    ok = True
    for p in paths:
        if use_atheris:
            ok &= run_atheris(p, args.time, args.runs, args.keep, args.seed)
        else:
            ok &= run_fallback(p, args.time, args.runs, args.seed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
