"""The job (program, arguments, options) and executing one run of it; replaying a token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..choice import Strategy
from ..runner import LabResult, _json_args, _run, run_gc_threshold
from ..token import Token, decode, run_hash
from .dpor import fingerprint
from .injection import Inject, _Injector
from .judging import RunOutcome, _fail_step, failure_signature
from .strategies import RunSpec

EXPLORE_MAX_STEPS = 200_000


@dataclass
class _Job:
    fn: Callable
    args: tuple
    entry: tuple[str, str | None]
    options: dict[str, Any]
    faults: Any = None
    goal: Callable[[Any], bool] | None = None
    inject_tasks: str = "*"


_JOB: _Job | None = None


def _execute(job: _Job, spec: RunSpec, strategy: Strategy | None = None,
             record: str | None = None, count: bool = False,
             ) -> tuple[LabResult, _Injector | None]:
    strat = strategy if strategy is not None else spec.strategy()
    inj_holder: list = []
    fault_setup = job.faults.setup if job.faults is not None else None

    def setup(hub) -> None:
        if spec.inject is not None or count:
            at = spec.inject.at if spec.inject is not None else None
            pattern = spec.inject.tasks if spec.inject is not None else job.inject_tasks
            inj = _Injector(hub, at, pattern)
            inj_holder.append(inj)
            hub.add_instrument(inj)
        if fault_setup is not None:
            fault_setup(hub)

    o = job.options
    max_time = o.get("max_time")
    if job.faults is not None and job.faults.liveness:
        lim = job.faults.until + job.faults.grace
        max_time = lim if max_time is None else min(max_time, lim)
    res = _run(job.fn, job.args, seed=spec.seed, record=record, strict=o.get("strict", True),
               strategy=strat, disable=o.get("disable", ()), net=o.get("net"),
               max_steps=o.get("max_steps", EXPLORE_MAX_STEPS), max_time=max_time,
               leak_policy="error", instruments=(), trace=True, entry=job.entry,
               track=True, setup=setup, lazy_trace=True)
    return res, (inj_holder[0] if inj_holder else None)


def _outcome(job: _Job, spec: RunSpec, res: LabResult, inj: _Injector | None,
             analysis: tuple | None = None) -> RunOutcome:
    sig = failure_signature(res, injected=spec.inject is not None, goal=job.goal)
    sched = res.schedule or []
    if res.halted == "sleep_blocked":
        cls = None
    else:
        cls = analysis[0] if analysis is not None else fingerprint(sched)
    failed = bool(sig)
    return RunOutcome(
        index=spec.index, failed=failed, signature=sig,
        message=res.summary() if failed else "", choices=list(res.choice_indices),
        run_hash=run_hash(res.full_trace().records) if failed and res.full_trace() is not None
        else "",
        steps=res.stats["steps"], tasks=res.stats["tasks"], cls=cls,
        checkpoints=list(inj.points) if inj is not None and spec.inject is None else [],
        fail_step=_fail_step(res), spec=spec, redundant=res.halted == "sleep_blocked")


def _work(spec: RunSpec, count: bool = False) -> RunOutcome:
    job = _JOB
    assert job is not None
    with run_gc_threshold():  # the run and its analysis (see lab.runner)
        res, inj = _execute(job, spec, count=count)
        return _outcome(job, spec, res, inj)


def _token_for(job: _Job, out: RunOutcome, strategy_label: str, seed: int) -> Token:
    from .. import __version__

    o = job.options
    opts = {"strict": o.get("strict", True), "disable": list(o.get("disable", ())),
            "max_steps": o.get("max_steps", EXPLORE_MAX_STEPS)}
    if o.get("max_time") is not None:
        opts["max_time"] = o["max_time"]
    if o.get("net") is not None:
        from ..runner import _net_dict

        opts["net"] = _net_dict(o["net"])
    inj = None
    if out.spec is not None and out.spec.inject is not None:
        inj = out.spec.inject.to_dict()
    return Token(entry=job.entry[0], entry_file=job.entry[1], args=_json_args(job.args),
                 choices=out.choices, run_hash=out.run_hash, seed=seed,
                 strategy=strategy_label, options=opts, inject=inj,
                 faults=job.faults.to_dict() if job.faults is not None else None,
                 signature=out.signature, lab=__version__)


def job_from_token(tok: Token, fn=None, faults=None) -> _Job:
    from ..replay import load_entry

    if fn is None:
        fn = load_entry(tok.entry, tok.entry_file)
    o = dict(tok.options)
    net = o.get("net")
    if net is not None:
        from ..net import NetConfig

        o["net"] = NetConfig.from_dict(net)
    o["disable"] = tuple(o.get("disable", ()))
    if faults is None and tok.faults:
        from ..faults import FaultPlan

        faults = FaultPlan.from_dict(tok.faults)
    return _Job(fn=fn, args=tuple(tok.args or ()), entry=(tok.entry, tok.entry_file),
                options=o, faults=faults)


@dataclass
class TokenReplay:
    """The result of replaying a token: ``reproduced`` when the run hash matches."""

    result: LabResult
    signature: list[str]
    reproduced: bool
    run_hash: str


def replay_token(token: str | Token, fn=None, *, record: str | None = None,
                 strict_choices: bool = True) -> TokenReplay:
    """Re-run the run a token describes. ``reproduced`` is true when the run hash
    equals the token's (the same events, step for step)."""
    tok = decode(token) if isinstance(token, str) else token
    job = job_from_token(tok, fn)
    spec = RunSpec(0, "indices", tok.seed, {"choices": tok.choices, "strict": strict_choices},
                   inject=Inject(**tok.inject) if tok.inject else None)
    res, _ = _execute(job, spec, record=record)
    sig = failure_signature(res, injected=tok.inject is not None)
    h = run_hash(res.full_trace().records) if res.full_trace() is not None else ""
    return TokenReplay(res, sig, bool(tok.run_hash) and h.startswith(tok.run_hash), h)
