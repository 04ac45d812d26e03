"""The lab hub, trace files, replay, strict mode and the CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenrt
import greenrt.lab as lab
from greenrt.lab.trace import KEY_ENV, parse

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "lab_programs.py")
sys.path.insert(0, HERE)
import lab_programs as P  # noqa: E402

PY = sys.executable


def cli(*args: str, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop(KEY_ENV, None)
    if env:
        e.update(env)
    return subprocess.run([PY, "-m", "greenrt.lab.cli", *args], capture_output=True, text=True,
                          env=e, cwd=cwd or os.getcwd(), timeout=120)


# -- the hub --------------------------------------------------------------------------


def test_same_seed_same_trace_and_result_in_process():
    a = lab.run(P.switchy, seed=11)
    b = lab.run(P.switchy, seed=11)
    assert a.ok and b.ok
    assert a.value == b.value
    assert a.trace.lines() == b.trace.lines()
    assert a.final_hash == b.final_hash


def test_seeds_explore_different_interleavings():
    results = {tuple(lab.run(P.switchy, seed=s).value) for s in range(8)}
    assert len(results) > 1


def test_timer_ties_are_ordered_by_the_choice_stream():
    orders = {}
    for s in range(12):
        r = lab.run(P.timer_tie, seed=s)
        assert r.ok
        orders[s] = tuple(r.value)
        timer_choices = [ev for ev in r.events
                         if ev.kind == "lab.choice" and ev.data["what"] == "timer"]
        assert [c.data["n"] for c in timer_choices] == [3, 2]
    assert len(set(orders.values())) > 1
    assert lab.run(P.timer_tie, seed=5).value == list(orders[5])


def test_virtual_time_jumps_to_the_next_timer():
    r = lab.run(P.long_sleep, seed=0)
    assert r.ok, r.summary()
    assert r.value == [0.0, 3600.0, 3610.0, True]
    assert r.stats["virtual_time"] == 3610.0


def test_every_scheduling_decision_is_recorded():
    r = lab.run(P.switchy, seed=3)
    picks = [ev for ev in r.events if ev.kind == "lab.choice" and ev.data["what"] == "task"]
    assert picks and r.stats["choices"] == len([e for e in r.events if e.kind == "lab.choice"])
    for p in picks:
        nxt = r.events[p.seq + 1]
        assert nxt.kind == "task.switch" and nxt.task == p.data["pick"]


def test_step_limit_halts_a_busy_wait():
    r = lab.run(P.busy_wait, seed=0, max_steps=2000)
    assert r.halted == "step_limit"
    assert not r.ok
    assert "step limit 2000" in str(r.error)


def test_program_error_is_the_outcome():
    r = lab.run(P.fails, seed=0)
    assert isinstance(r.error, ValueError) and r.outcome.is_failure
    assert not r.violations
    with pytest.raises(lab.LabFailure, match="ValueError: boom"):
        r.check()


# -- strict mode ----------------------------------------------------------------------


@pytest.mark.parametrize("fn, call", [
    (P.uses_time_time, "time.time()"), (P.uses_time_sleep, "time.sleep()"),
    (P.uses_random, "random.random()"), (P.uses_urandom, "os.urandom()"),
    (P.uses_to_thread, "to_thread"),
])
def test_strict_mode_refuses_and_names_the_call(fn, call):
    r = lab.run(fn, seed=0)
    assert isinstance(r.error, lab.NondeterminismError)
    assert r.error.what == call
    assert "refused under the lab hub" in str(r.error) and r.error.hint


def test_strict_patches_are_restored_after_the_run():
    originals = (time.time, time.sleep, random.random, os.urandom)
    lab.run(P.uses_time_time, seed=0)
    lab.run(P.fails, seed=0)
    assert (time.time, time.sleep, random.random, os.urandom) == originals
    assert isinstance(time.time(), float)


def test_non_strict_mode_allows_and_notes_threads():
    r = lab.run(P.uses_to_thread, seed=0, strict=False)
    assert r.ok, r.summary()
    assert r.value == 42
    assert any(ev.kind == "lab.nondeterminism" and ev.data["what"] == "to_thread"
               for ev in r.events)


def test_lab_rng_is_seeded_from_the_choice_stream_and_replays():
    a = lab.run(P.uses_lab_rng, seed=4)
    b = lab.run(P.uses_lab_rng, seed=4)
    c = lab.run(P.uses_lab_rng, seed=5)
    assert a.value == b.value and a.value != c.value
    assert lab.replay(a.trace, P.uses_lab_rng).divergence is None


# -- traces ---------------------------------------------------------------------------


def test_trace_file_shape(tmp_path):
    path = tmp_path / "t.jsonl"
    r = lab.run(P.switchy, seed=2, record=str(path))
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    header = json.loads(lines[0])
    footer = json.loads(lines[-2])
    assert header["type"] == "header" and header["seed"] == 2
    assert header["format"] == "greenrt-lab-trace/1"
    assert header["entry"] == "lab_programs:switchy"
    assert header["strategy"] == {"name": "random", "seed": 2}
    assert footer["type"] == "footer" and footer["records"] == len(lines) - 3
    assert footer["final"] == r.final_hash == json.loads(lines[-3])["h"]
    kinds = {json.loads(x)["kind"] for x in lines[1:-2]}
    assert {"task.spawn", "task.switch", "checkpoint", "lab.choice", "lab.timer",
            "region.open", "region.close", "task.complete"} <= kinds
    rep = lab.verify(path)
    assert rep.records == footer["records"] and rep.final_hash == r.final_hash


def test_same_seed_byte_identical_across_processes_and_hash_seeds(tmp_path):
    outs = []
    for hs in ("1", "2"):
        out = tmp_path / f"run{hs}.jsonl"
        p = cli("run", f"{PROGRAMS}:switchy", "--seed", "7", "--record", str(out),
                env={"PYTHONHASHSEED": hs})
        assert p.returncode == 0, p.stdout + p.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    other = tmp_path / "other.jsonl"
    cli("run", f"{PROGRAMS}:switchy", "--seed", "8", "--record", str(other))
    assert other.read_bytes() != outs[0]


def _small_trace(tmp_path) -> bytes:
    path = tmp_path / "small.jsonl"
    lab.run(P.timer_tie, seed=1, record=str(path))
    return path.read_bytes()


def test_tampering_with_any_single_byte_is_detected(tmp_path):
    data = _small_trace(tmp_path)
    assert parse(data, require_key=False).records
    undetected = []
    for i in range(len(data)):
        for new in {data[i] ^ 0x01, ord("0") if data[i] != ord("0") else ord("1")}:
            bad = data[:i] + bytes([new]) + data[i + 1:]
            try:
                parse(bad, require_key=False)
            except lab.TraceError as e:
                assert e.line is None or 1 <= e.line <= data.count(b"\n") + 1
            else:
                undetected.append(i)
    assert not undetected
    # truncation and appended data
    for bad in (data[:-1], data[: len(data) // 2], data + b"x\n", data + data[:10]):
        with pytest.raises(lab.TraceError):
            parse(bad, require_key=False)


def test_verify_names_the_first_bad_record(tmp_path):
    path = tmp_path / "t.jsonl"
    lab.run(P.switchy, seed=1, record=str(path))
    lines = path.read_bytes().split(b"\n")
    rec = json.loads(lines[5])
    h = rec.pop("h")
    rec["t"] = 99.0
    from greenrt.lab.trace import canonical_json, sealed_line

    lines[5] = sealed_line(canonical_json(rec), h).encode()  # well-formed, old hash
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(lab.TraceError) as ei:
        lab.verify(path)
    assert ei.value.line == 6 and "hash mismatch" in str(ei.value)
    p = cli("verify", str(path))
    assert p.returncode == 1 and "line 6" in p.stdout and "INVALID" in p.stdout


def test_hmac_keyed_traces(tmp_path, monkeypatch):
    path = tmp_path / "k.jsonl"
    monkeypatch.setenv(KEY_ENV, "s3cret")
    lab.run(P.timer_tie, seed=1, record=str(path))
    assert lab.verify(path).keyed
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(lab.TraceError, match="hash mismatch"):
        lab.verify(path)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(lab.TraceError, match="keyed trace"):
        lab.verify(path)
    unkeyed = tmp_path / "u.jsonl"
    lab.run(P.timer_tie, seed=1, record=str(unkeyed))
    monkeypatch.setenv(KEY_ENV, "s3cret")
    with pytest.raises(lab.TraceError, match="without a MAC"):
        lab.verify(unkeyed)


# -- replay ---------------------------------------------------------------------------


def test_replay_reproduces_the_run_exactly(tmp_path):
    path = tmp_path / "t.jsonl"
    r = lab.run(P.switchy, seed=9, record=str(path))
    rr = lab.replay(path)
    assert rr.divergence is None and rr.ok
    assert rr.final_hash == r.final_hash
    assert rr.value == r.value
    assert rr.trace.lines() == r.trace.lines()


def test_replay_of_a_modified_program_reports_the_divergence_step(tmp_path):
    path = tmp_path / "t.jsonl"
    r = lab.run(P.switchy, seed=9, record=str(path))
    rr = lab.replay(path, P.switchy_modified)
    d = rr.divergence
    assert d is not None
    recorded = lab.trace.read(path).records
    assert d.expected == recorded[d.step]
    assert d.got != d.expected and d.got["seq"] == d.step
    msg = str(d)
    assert msg.startswith(f"diverged at step {d.step}: expected ")
    assert ", got " in msg
    # Everything before the reported step is identical, and the edit (one more
    # checkpoint in worker 2's 4th round) happened before it.
    assert [lab.trace.event_record(e) for e in rr.events[:d.step]] == recorded[:d.step]
    worker2 = next(ev.task for ev in r.events
                   if ev.kind == "task.spawn" and ev.data["name"] == "worker2")
    w2_checkpoints = [e.seq for e in r.events if e.kind == "checkpoint" and e.task == worker2]
    assert d.step > w2_checkpoints[2]
    assert d.got["seq"] == d.step and d.step < len(recorded)
    with pytest.raises(lab.ReplayDivergence):
        lab.replay(path, P.switchy_modified, check=True)


def test_replay_cli_reports_divergence(tmp_path):
    path = tmp_path / "t.jsonl"
    p = cli("run", f"{PROGRAMS}:switchy", "--seed", "3", "--record", str(path))
    assert p.returncode == 0, p.stderr
    ok = cli("replay", str(path))
    assert ok.returncode == 0 and "reproduced" in ok.stdout, ok.stdout + ok.stderr
    # Point the recorded entry at the modified program, re-sealing the chain, as a user
    # who edited the program would: the replay must stop at the first difference.
    t = lab.trace.read(path)
    t.header["entry"] = f"{PROGRAMS}:switchy_modified"
    t._lines = None
    t.save(path)
    bad = cli("replay", str(path))
    assert bad.returncode == 1
    assert "diverged at step" in bad.stdout and "expected" in bad.stdout


def test_determinism_self_check():
    assert lab.check_determinism(P.switchy, seed=4, runs=3) is None
    counter = {"n": 0}

    def depends_on_outside_state():
        counter["n"] += 1
        with greenrt.region() as r:
            for i in range(counter["n"]):
                r.spawn(greenrt.checkpoint, name=f"c{i}")

    msg = lab.check_determinism(depends_on_outside_state, seed=0)
    assert msg is not None and msg.startswith("runs 1 and 2 with seed 0 differ at step ")


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**62), tasks=st.integers(1, 5))
def test_replay_property(seed, tasks):
    r = lab.run(P.switchy, tasks, 4, seed=seed)
    assert r.ok
    rr = lab.replay(r.trace, P.switchy, tasks, 4)
    assert rr.divergence is None and rr.final_hash == r.final_hash


# -- CLI ------------------------------------------------------------------------------


def test_cli_run_show_verify(tmp_path):
    path = tmp_path / "t.jsonl"
    p = cli("run", f"{PROGRAMS}:deadlock_violation", "--seed", "1", "--record", str(path))
    assert p.returncode == 1
    assert "[deadlock]" in p.stdout and "greenrt-lab replay" in p.stdout
    v = cli("verify", str(path))
    assert v.returncode == 0 and "ok:" in v.stdout
    s = cli("show", str(path))
    assert s.returncode == 0
    assert "DEADLOCK" in s.stdout and "T2 a" in s.stdout
    s2 = cli("show", str(path), "--task", "3", "--no-checkpoints")
    assert s2.returncode == 0 and "checkpoint" not in s2.stdout.split("\n", 1)[1]
    d = cli("run", f"{PROGRAMS}:deadlock_violation", "--disable", "deadlock")
    assert "[deadlock]" not in d.stdout
    sc = cli("run", f"{PROGRAMS}:switchy", "--seed", "2", "--self-check")
    assert sc.returncode == 0 and "same trace twice" in sc.stdout
    bad = cli("verify", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2
