"""Running specs in index order, in worker processes when ``workers > 1``.

Workers are started with the ``forkserver`` method: a clean server process (started
once per interpreter, with ``greenrt.lab`` preloaded) forks them, so a worker never
inherits the caller's threads or the locks they hold, and Python 3.12+ has no reason
to warn that ``fork()`` in a multi-threaded process may deadlock. Nothing is forked
from the calling process. The program reaches a worker in one of two ways:

1. pickled by reference (a module-level function of an importable module; the
   worker gets the caller's ``sys.path``), or
2. loaded from its entry (``module:qualname`` or ``path/to/file.py:qualname``) with
   ``lab.load_entry``.

A program that neither can reach (a closure, a lambda, a ``functools.partial`` of a
local) runs in the calling process instead: the runs and their results are exactly
those of any worker count (``ExploreResult.workers`` says how many were used).

As with any ``forkserver``/``spawn`` multiprocessing (and Python 3.14's default), a
*script* that calls ``explore(..., workers=K)`` must guard its top level with
``if __name__ == "__main__":``: a worker imports the script as ``__mp_main__`` to
find the program, and an unguarded script would start the exploration again there
(multiprocessing then refuses with its "bootstrapping phase" ``RuntimeError``).

One pool serves a whole exploration (``open_pool``; the portfolio dispatches a round
at a time), so worker start-up is paid once per ``explore`` call.
"""

from __future__ import annotations

import pickle
from dataclasses import replace

from . import job as _jobmod
from .job import _Job, _work
from .judging import RunOutcome
from .strategies import RunSpec

CHUNK = 8
START_METHOD = "forkserver"


def _work_chunk(specs: list[RunSpec]) -> list[RunOutcome]:
    return [_work(sp) for sp in specs]


def _portable(job: _Job) -> bytes | None:
    """The job as bytes a fresh worker can rebuild, or None when it cannot be."""
    from ..replay import load_entry

    fn_bytes = None
    try:
        fn_bytes = pickle.dumps(job.fn)
        pickle.loads(fn_bytes)
    except Exception:  # noqa: BLE001 - any pickling failure means: not by reference
        fn_bytes = None
    loadable = True
    try:
        load_entry(*job.entry)
    except Exception:  # noqa: BLE001 - not loadable by name or file
        loadable = False
    if fn_bytes is None and not loadable:
        return None
    try:
        return pickle.dumps((replace(job, fn=None), fn_bytes, loadable))
    except Exception:  # noqa: BLE001 - arguments, goal or options that do not pickle
        return None


def _init_worker(blob: bytes) -> None:
    job, fn_bytes, loadable = pickle.loads(blob)
    fn = None
    if fn_bytes is not None:
        try:
            fn = pickle.loads(fn_bytes)
        except Exception:  # noqa: BLE001 - its module is not on this process's path
            if not loadable:
                raise
    if fn is None:
        from ..replay import load_entry

        fn = load_entry(*job.entry)
    job.fn = fn
    _jobmod._JOB = job


_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        import multiprocessing as mp

        _CTX = mp.get_context(START_METHOD)
        _CTX.set_forkserver_preload(["greenrt.lab", "greenrt.lab.explorer"])
    return _CTX


def workers_usable(job: _Job) -> bool:
    """Whether ``job`` can run in worker processes (see the module docstring)."""
    return _portable(job) is not None


def open_pool(blob: bytes, workers: int):
    """Worker processes for one exploration (reused by every batch of runs)."""
    import concurrent.futures as cf

    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=_context(),
                                  initializer=_init_worker, initargs=(blob,))


def _run_specs(specs: list[RunSpec], workers: int, stop_on_failure: bool,
               progress, total: int, done0: int, fails0: int,
               blob: bytes | None = None, pool=None) -> list[RunOutcome]:
    """Run specs in index order (in parallel when ``workers > 1`` and the job is
    portable, ``blob``; in ``pool`` when given, else in a pool of its own); with
    ``stop_on_failure`` stop after the lowest failing index (all lower ones done)."""
    out: list[RunOutcome] = []
    fails = fails0
    if workers <= 1 or len(specs) <= 1 or blob is None:
        for sp in specs:
            o = _work(sp)
            out.append(o)
            if o.failed:
                fails += 1
            if progress is not None:
                progress(done0 + len(out), total, fails)
            if o.failed and stop_on_failure:
                break
        return out
    import concurrent.futures as cf

    results: dict[int, RunOutcome] = {}
    position = {sp.index: n for n, sp in enumerate(specs)}  # indices may have gaps
    first_fail: int | None = None
    # Chunks of CHUNK consecutive runs per task keep the IPC cost per run low.
    chunks = [list(range(s, min(s + CHUNK, len(specs)))) for s in range(0, len(specs), CHUNK)]
    own = pool is None
    ex = open_pool(blob, workers) if own else pool
    try:
        window = workers * 3
        it = iter(range(len(chunks)))
        running: dict = {}

        def submit_more() -> None:
            while len(running) < window:
                c = next(it, None)
                if c is None or (first_fail is not None and chunks[c][0] > first_fail):
                    return
                running[ex.submit(_work_chunk, [specs[k] for k in chunks[c]])] = chunks[c][0]

        submit_more()
        while running:
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                running.pop(fut)
                for o in fut.result():
                    k = position[o.index]
                    results[k] = o
                    if o.failed:
                        fails += 1
                        if stop_on_failure and (first_fail is None or k < first_fail):
                            first_fail = k
                if progress is not None:
                    progress(done0 + len(results), total, fails)
            if first_fail is not None:
                for fut, k in list(running.items()):
                    if k > first_fail and fut.cancel():
                        del running[fut]
            submit_more()
    finally:
        if own:
            ex.shutdown(wait=True, cancel_futures=True)
    last = len(specs) - 1 if first_fail is None else first_fail
    return [results[k] for k in range(last + 1)]  # every index <= last was run
