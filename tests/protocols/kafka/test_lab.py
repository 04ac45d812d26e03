"""The Kafka client under the lab (virtual time, seeded scheduling, the simulated
network) against a scripted in-lab broker (``labbroker.py``) that logs what it really
appended and committed.

Cancellation is injected at every checkpoint position: send ``i`` of worker ``w``
runs under a poll quota of ``(w + i) % K + 1`` checkpoints (or a fixed quota), plus
random ``cancel()`` from a chaos task, plus broker faults (retriable refusals, answers
lost after the write took effect); ``lab.explore(inject="all")`` then cancels a task
at each of its checkpoints in turn. What must hold, from the broker's log:

* no record reported *failed* (an error that is neither ``KafkaOutcomeUnknown`` nor
  ``Cancelled``) was in fact appended; every record reported sent is in the log once,
  at the offset reported; no record is appended twice (idempotence); the broker never
  saw a sequence number out of order;
* no commit reported failed (``CommitFailedError``) was in fact stored (a commit whose
  answer was lost is ``CommitOutcomeUnknown``); every commit reported done was stored;
* the lab's oracles: no leaked obligation or task, quiescence, and every run ends
  (a producer that loops forever halts the run with ``time_limit``/``step_limit``).
"""

from __future__ import annotations

import pytest

import greenrt
import greenrt.lab as lab
from greenrt import lowlevel as ll
from greenrt import net
from greenrt.protocols.kafka.cluster import Cluster
from greenrt.protocols.kafka.connection import KafkaLimits
from greenrt.protocols.kafka.consumer import Consumer
from greenrt.protocols.kafka.errors import CommitFailedError, KafkaOutcomeUnknown
from greenrt.protocols.kafka.producer import Producer

from .labbroker import HOST, PORT, LabBroker

pytestmark = pytest.mark.timeout(300)

BOOT = f"{HOST}:{PORT}"


def with_broker(broker: LabBroker, body):
    servers = []
    with greenrt.region() as outer:
        outer.spawn(lambda: net.serve_tcp(broker.serve, HOST, PORT, on_ready=servers.append))
        while not servers:
            greenrt.sleep(0.0001)
        try:
            return body()
        finally:
            servers[0].shutdown()


def chaos(rng, active: dict, stop: list, rate: float):
    while not stop:
        greenrt.sleep(rng.choice([0.0001, 0.0003, 0.001]))
        if active and rng.random() < rate:
            rng.choice(list(active.values())).cancel("chaos")


def produce_program(workers: int, rounds: int, k_max: int, quota: int = 0,
                    refuse: float = 0.1, drop: float = 0.1, rate: float = 0.05,
                    max_batch: int = 10000, many: int = 0, forget: float = 0.0) -> dict:
    """``workers`` tasks each send ``rounds`` records under a cancellation quota
    (``quota``, or ``(w + i) % k_max + 1`` when 0) — with ``many``, each round is one
    ``send_many`` of ``many`` records; returns each record's reported outcome and the
    broker's log."""
    rng = lab.rng()
    broker = LabBroker(refuse=refuse, drop=drop, forget=forget)
    active: dict = {}
    outcome: dict[bytes, tuple] = {}

    def body():
        prod = Producer(BOOT, retry_backoff=0.001, delivery_timeout=5.0, max_batch_records=max_batch)
        stop: list = []
        with greenrt.region() as rg:
            rg.spawn(chaos, rng, active, stop, rate)

            def worker(w):
                for i in range(rounds):
                    value = b"w%d.%d" % (w, i)
                    q = quota or (w + i) % k_max + 1
                    if many:
                        send_many(w, i, q)
                        continue
                    with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=q)) as sc:
                        active[id(sc)] = sc
                        try:
                            md = prod.send("t", value, partition=w % 2)
                            outcome[value] = ("ok", md.partition, md.offset)
                        except KafkaOutcomeUnknown:
                            outcome[value] = ("unknown",)
                        except greenrt.Cancelled:
                            outcome[value] = ("cancelled",)
                            raise
                        except Exception as e:  # reported failed: the test checks it
                            outcome[value] = ("failed", repr(e))
                        finally:
                            active.pop(id(sc), None)

            def send_many(w, i, q):
                values = [b"w%d.%d.%d" % (w, i, j) for j in range(many)]
                with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=q)) as sc:
                    active[id(sc)] = sc
                    try:
                        res = prod.send_many("t", [(b"k%d" % j, v) for j, v in enumerate(values)])
                        for v, md in zip(values, res, strict=True):
                            if isinstance(md, KafkaOutcomeUnknown):
                                outcome[v] = ("unknown",)
                            elif isinstance(md, BaseException):
                                outcome[v] = ("failed", repr(md))
                            else:
                                outcome[v] = ("ok", md.partition, md.offset)
                    except greenrt.Cancelled:
                        for v in values:
                            outcome[v] = ("cancelled",)
                        raise
                    except Exception as e:  # raised before anything was queued: failed
                        for v in values:
                            outcome[v] = ("failed", repr(e))
                    finally:
                        active.pop(id(sc), None)

            with greenrt.region(name="producers") as wr:
                for w in range(workers):
                    wr.spawn(worker, w, name=f"produce-{w}")
            stop.append(True)
        st = prod.statistics()
        prod.close()
        return st

    st = with_broker(broker, body)
    return {"outcome": outcome, "appended": broker.appended, "stats": st, "broker": broker.stats,
            "batches": broker.batches}


def check_produce(out: dict) -> dict:
    """The oracle of the produce program (see the module docstring); returns a tally."""
    # idempotent sequence numbers: the broker appends a batch only at the next expected
    # sequence of its producer and partition, and refuses any other (OUT_OF_ORDER);
    # in-doubt batches are re-sent with their own numbers, failed ones give theirs back
    assert out["broker"]["out_of_order"] == 0, out["broker"]
    log = {}
    for _topic, part, off, value in out["appended"]:
        assert value not in log, f"{value!r} appended twice: {log[value]} and {(part, off)}"
        log[value] = (part, off)
    tally: dict[str, int] = {}
    for value, res in out["outcome"].items():
        tally[res[0]] = tally.get(res[0], 0) + 1
        if res[0] == "failed":
            assert value not in log, f"{value!r} reported failed ({res[1]}) but was written at {log[value]}"
        elif res[0] == "ok":
            assert log.get(value) == res[1:], f"{value!r} reported at {res[1:]}, written at {log.get(value)}"
    return tally


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_produce_under_cancellation_injection(seed):
    res = lab.run(produce_program, 6, 12, 25, seed=seed)
    res.check()
    tally = check_produce(res.value)
    assert sum(tally.values()) == 6 * 12
    assert tally.get("ok", 0) > 0 and tally.get("cancelled", 0) + tally.get("unknown", 0) > 0


@pytest.mark.parametrize("seed", [1, 4])
def test_produce_with_small_batches_under_cancellation_injection(seed):
    """Batches of at most 2 records: records left over by a flusher wait for the next
    batch (their callers re-park in the new group); none is lost or stranded."""
    res = lab.run(produce_program, 8, 8, 25, 0, 0.1, 0.1, 0.05, 2, seed=seed)
    res.check()
    tally = check_produce(res.value)
    assert sum(tally.values()) == 8 * 8 and tally.get("ok", 0) > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_send_many_under_cancellation_injection(seed):
    """``send_many`` of 5 records (keyed over 2 partitions, batches of 3) beside the
    same faults, each call under a quota of 200 checkpoints: per record, the same
    oracle."""
    res = lab.run(produce_program, 4, 8, 0, 200, 0.1, 0.1, 0.02, 3, 5, seed=seed)
    res.check()
    tally = check_produce(res.value)
    assert sum(tally.values()) == 4 * 8 * 5
    assert tally.get("ok", 0) > 0 and tally.get("cancelled", 0) + tally.get("unknown", 0) > 0


@pytest.mark.parametrize("seed", [2, 5])
def test_produce_with_a_fixed_quota_ends(seed):
    """The hang found earlier: seed 2, every send under a quota of 20 checkpoints, a
    broker that refuses and drops answers; the producer looped forever re-sending an
    in-doubt batch on a closed connection. Every run must end within the lab's
    limits, with the same oracle."""
    res = lab.run(produce_program, 4, 10, 0, 20, seed=seed)
    res.check()
    tally = check_produce(res.value)
    assert sum(tally.values()) == 4 * 10


def test_produce_when_the_broker_forgets_producer_state():
    """The broker forgets a producer's state on a partition now and then (as after
    retention removed its last batches): a batch with a sequence other than 0 is then
    refused with UNKNOWN_PRODUCER_ID, for good. A batch that was never written is
    renumbered under a bumped epoch (InitProducerId with the current id and epoch,
    KIP-360) and sent again; an in-doubt batch (its answer lost, then refused on
    re-send) is abandoned with its records left *unknown*, the epoch bumped, and the
    partition goes on: before, it stayed blocked behind that batch for good (every
    later record failed "an earlier batch is still in doubt"). Beside the same
    cancellations and faults, per seed, the same oracle (nothing reported failed was
    written, nothing written twice, no sequence gap), and every send settles."""
    abandoned = 0
    for seed in range(1, 7):
        res = lab.run(produce_program, 6, 12, 25, 0, 0.1, 0.3, 0.05, 2, 0, 0.8, seed=seed)
        res.check()
        out = res.value
        tally = check_produce(out)
        assert sum(tally.values()) == 6 * 12
        assert out["broker"]["forgotten"] > 0 and out["broker"]["unknown_producer"] > 0, out["broker"]
        st = out["stats"]
        assert st["epoch_bumps"] == out["broker"]["epoch_bumps"] > 0, (st, out["broker"])
        abandoned += st["in_doubt_abandoned"]
        # the partitions go on after the bump: batches under the new epoch were written
        first = out["batches"][0][:2]
        assert any(b[:2] != first for b in out["batches"]), out["batches"]
        fails = [r for r in out["outcome"].values() if r[0] == "failed"]
        assert not any("still in doubt" in r[1] for r in fails), fails
    assert abandoned > 0  # over the seeds: in-doubt batches met a broker that forgot


def submit_program(workers: int, rounds: int, window: int = 3, refuse: float = 0.1, drop: float = 0.1,
                   rate: float = 0.1, max_queued: int = 4, chaos_on: bool = True) -> dict:
    """``workers`` tasks each ``submit`` ``rounds`` records inside the producer's
    ``with`` block, keeping ``window`` Deliveries outstanding (the oldest waited for
    before the next submit) under a partition queue of ``max_queued`` (so submit also
    waits for room); a chaos task cancels the producer's *sender* tasks (and the
    workers' waits) at random, beside the broker's refusals and lost answers. Each
    record's outcome comes from its Delivery: ``failed`` is any error but
    ``KafkaOutcomeUnknown`` (``RecordNotSent``: never sent; a broker refusal), and
    ``cancelled`` a submit that was cancelled while it waited for room (nothing
    queued)."""
    rng = lab.rng()
    broker = LabBroker(refuse=refuse, drop=drop)
    outcome: dict[bytes, tuple] = {}

    def settle(value: bytes, d) -> None:
        while True:
            try:
                e = d.exception()
                break
            except greenrt.Cancelled:  # a cancelled wait: the record goes on; wait again
                continue
        if e is None:
            md = d.result()
            outcome[value] = ("ok", md.partition, md.offset)
        elif isinstance(e, KafkaOutcomeUnknown):
            outcome[value] = ("unknown",)
        else:
            outcome[value] = ("failed", repr(e))

    def body():
        stop: list = []
        with Producer(BOOT, retry_backoff=0.001, delivery_timeout=5.0, max_queued_records=max_queued) as prod:
            def sender_chaos():
                while not stop:
                    greenrt.sleep(rng.choice([0.0001, 0.0003, 0.001]))
                    senders = [t for t in prod._region.children() if t.name.startswith("kafka.sender")]
                    if senders and rng.random() < rate:
                        rng.choice(senders).cancel("chaos")

            def worker(w):
                pending: list = []
                for i in range(rounds):
                    value = b"s%d.%d" % (w, i)
                    if len(pending) >= window:
                        settle(*pending.pop(0))
                    try:
                        with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=(w + i) % 7 + 1)):
                            pending.append((value, prod.submit("t", value, partition=w % 2)))
                    except greenrt.Cancelled:  # only a full queue waits: nothing was queued
                        pass
                    if value not in dict(pending):
                        outcome[value] = ("cancelled",)
                for value, d in pending:
                    settle(value, d)

            with greenrt.region(name="chaos") as cr:
                if chaos_on:
                    cr.spawn(sender_chaos)
                with greenrt.region(name="submitters") as wr:
                    for w in range(workers):
                        wr.spawn(worker, w, name=f"submit-{w}")
                stop.append(True)
            st = prod.statistics()
        return st

    st = with_broker(broker, body)
    return {"outcome": outcome, "appended": broker.appended, "stats": st, "broker": broker.stats,
            "batches": broker.batches}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_submit_under_sender_cancellation(seed):
    """Submitted records, their senders cancelled at random: the same oracle as for
    ``send`` (nothing reported failed was written, nothing written twice, no
    sequence gap), every Delivery settles (a stranded record would leave its waiter
    parked for good: the lab reports the deadlock), and cancelled senders are
    replaced."""
    res = lab.run(submit_program, 4, 10, seed=seed)
    res.check()
    tally = check_produce(res.value)
    assert sum(tally.values()) == 4 * 10
    assert tally.get("ok", 0) > 0
    st = res.value["stats"]
    assert st["senders_started"] > 1, st


def explore_submit() -> dict:
    """For ``lab.explore``: 2 submitters x 5 records, no chaos (the explorer cancels
    the sender tasks at each of their checkpoints), a broker that refuses and drops."""
    out = submit_program(2, 5, 2, 0.2, 0.2, 0.0, 4, False)
    return {"checked": True, **check_produce(out)}


def withdraw_program(linger: float, metadata_delay: float, cancel_at: float) -> dict:
    """Two callers share one batch (``linger``); the flusher is cancelled at
    ``cancel_at`` while the batch waits for the partition's leader (a Metadata answer
    that takes ``metadata_delay``), before any byte of its Produce request left."""
    broker = LabBroker(think=(0,), slow={"Metadata": metadata_delay})
    seen: dict = {}

    def body():
        prod = Producer(BOOT, linger=linger)

        def flusher():
            try:
                with greenrt.fail_after(cancel_at):
                    prod.send("t", b"a", partition=0)
                seen["a"] = "ok"
            except TimeoutError:
                seen["a"] = "withdrawn"
            except KafkaOutcomeUnknown:  # pragma: no cover - the bug this test guards
                seen["a"] = "unknown"

        def waiter():
            greenrt.sleep(linger / 2)
            try:
                md = prod.send("t", b"b", partition=0)
                seen["b"] = ("ok", md.offset)
            except KafkaOutcomeUnknown:
                seen["b"] = ("unknown",)

        with greenrt.region() as r:
            r.spawn(flusher)
            r.spawn(waiter)
        st = prod.statistics()
        prod.close()
        return st

    st = with_broker(broker, body)
    return {"seen": seen, "stats": st, "appended": broker.appended}


def test_a_flusher_cancelled_before_its_request_left_withdraws_the_batch():
    """The flusher's record is withdrawn (its caller hears ``Cancelled``, here as the
    ``fail_after`` timeout) and never written; the other caller's record, taken into
    the same batch, was not sent either, so it is not reported unknown: it goes back
    to the queue and is sent by its own caller, once. Before, both were reported
    unknown although no byte had left."""
    res = lab.run(withdraw_program, 0.01, 1.0, 0.5, seed=1)
    res.check()
    out = res.value
    assert out["seen"]["a"] == "withdrawn", out
    assert out["seen"]["b"] == ("ok", 0), out
    assert [v for _t, _p, _o, v in out["appended"]] == [b"b"]
    assert out["stats"]["withdrawn_batches"] == 1 and out["stats"]["in_doubt"] == 0, out["stats"]


def test_a_flusher_cancelled_after_its_request_left_leaves_it_unknown():
    """The same program with the Metadata answer fast and the Produce answer slow:
    the request left, so the shared batch is in doubt: the other caller hears
    ``KafkaOutcomeUnknown`` (never failed), and the batch is re-sent with the same
    sequence by the next flush, so the broker holds it once."""
    broker = LabBroker(think=(0,), slow={"Produce": 1.0})
    seen: dict = {}

    def body():
        prod = Producer(BOOT, linger=0.01)

        def flusher():
            try:
                with greenrt.fail_after(0.5):
                    prod.send("t", b"a", partition=0)
            except TimeoutError:
                seen["a"] = "cancelled"

        def waiter():
            greenrt.sleep(0.005)
            try:
                prod.send("t", b"b", partition=0)
                seen["b"] = "ok"
            except KafkaOutcomeUnknown:
                seen["b"] = "unknown"

        with greenrt.region() as r:
            r.spawn(flusher)
            r.spawn(waiter)
        prod.send("t", b"c", partition=0)
        st = prod.statistics()
        prod.close()
        return st

    res = lab.run(lambda: with_broker(broker, body), seed=1)
    res.check()
    st = res.value
    assert seen == {"a": "cancelled", "b": "unknown"}, seen
    assert st["in_doubt"] == 2 and st["in_doubt_resolved"] == 1 and st["withdrawn_batches"] == 0, st
    assert sorted(v for _t, _p, _o, v in broker.appended) == [b"a", b"b", b"c"]


def test_timestamps_reported_are_the_ones_written():
    """A record sent without ``timestamp_ms`` gets its batch's creation time (the
    lab's wall clock); one with it keeps its own, beside the others in the same
    batch; the metadata returned says what the broker holds."""
    broker = LabBroker(think=(0,))

    def body():
        prod = Producer(BOOT, linger=0.01)
        out = {}
        t0 = int(ll.current_hub().wall_time() * 1000)
        with greenrt.region() as r:
            for i in range(6):
                stamp = 1_000_000 + i if i % 2 else None
                r.spawn(lambda i=i, stamp=stamp: out.__setitem__(
                    i, prod.send("t", b"v%d" % i, partition=0, timestamp_ms=stamp)))
        t1 = int(ll.current_hub().wall_time() * 1000)
        prod.close()
        return out, t0, t1

    res = lab.run(lambda: with_broker(broker, body), seed=1)
    res.check()
    out, t0, t1 = res.value
    written = {}
    for values, stamps in ((b[3], b[4]) for b in broker.batches):
        written.update(zip(values, stamps, strict=True))
    assert len(broker.batches) == 1  # one batch: explicit and batch timestamps side by side
    for i, md in out.items():
        assert written[b"v%d" % i] == md.timestamp
        if i % 2:
            assert md.timestamp == 1_000_000 + i
        else:
            assert t0 <= md.timestamp <= t1


def silent_program() -> dict:
    """A broker that reads Produce requests and never answers: each attempt ends at
    ``request_timeout`` (connection closed, outcome unknown), the retries at
    ``delivery_timeout``; the send reports unknown, never failed, and returns."""
    broker = LabBroker(silent=("Produce",))

    def body():
        prod = Producer(Cluster(BOOT, limits=KafkaLimits(request_timeout=1.0)), retry_backoff=0.01,
                        delivery_timeout=3.0)
        t0 = greenrt.now()
        try:
            prod.send("t", b"v", partition=0)
            res = "ok"
        except KafkaOutcomeUnknown:
            res = "unknown"
        elapsed = greenrt.now() - t0
        st = prod.statistics()
        prod.close()
        return {"result": res, "elapsed": elapsed, "stats": st,
                "opened": prod.cluster.statistics()["connections_opened"]}

    out = with_broker(broker, body)
    return {**out, "requests": broker.stats["requests"]}


def test_a_silent_broker_ends_each_attempt_at_request_timeout():
    res = lab.run(silent_program, seed=1)
    res.check()
    out = res.value
    assert out["result"] == "unknown"
    # virtual time: attempts of 1 s each until the 3 s delivery timeout, then the end
    assert 3.0 <= out["elapsed"] < 5.0, out
    assert out["stats"]["retries"] >= 2 and out["opened"] >= 3  # a fresh connection each time


def commit_program(workers: int, rounds: int, k_max: int, quota: int = 0, drop: float = 0.2,
                   rate: float = 0.05) -> dict:
    """``workers`` tasks commit increasing offsets of one partition each, under a
    cancellation quota; returns each commit's reported outcome and the broker's log."""
    rng = lab.rng()
    broker = LabBroker(drop=drop)
    active: dict = {}
    outcome: dict[tuple, str] = {}

    def body():
        stop: list = []
        with greenrt.region() as rg:
            rg.spawn(chaos, rng, active, stop, rate)

            def worker(w):
                with Consumer(BOOT, group_id=f"g{w}") as c:
                    for i in range(rounds):
                        key = (f"g{w}", "t", w % 2, i + 1)
                        q = quota or (w + i) % k_max + 1
                        with greenrt.cancel_scope(budget=greenrt.Budget(poll_quota=q)) as sc:
                            active[id(sc)] = sc
                            try:
                                c.commit({("t", w % 2): i + 1})
                                outcome[key] = "ok"
                            except KafkaOutcomeUnknown:
                                outcome[key] = "unknown"
                            except CommitFailedError:
                                outcome[key] = "failed"
                            except greenrt.Cancelled:
                                outcome[key] = "cancelled"
                                raise
                            finally:
                                active.pop(id(sc), None)

            with greenrt.region(name="committers") as wr:
                for w in range(workers):
                    wr.spawn(worker, w, name=f"commit-{w}")
            stop.append(True)

    with_broker(broker, body)
    return {"outcome": outcome, "committed": broker.committed}


def check_commit(out: dict) -> dict:
    stored = set(out["committed"])
    tally: dict[str, int] = {}
    for key, res in out["outcome"].items():
        tally[res] = tally.get(res, 0) + 1
        if res == "failed":
            assert key not in stored, f"commit {key} reported failed but was stored"
        elif res == "ok":
            assert key in stored, f"commit {key} reported done but never stored"
    return tally


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_commit_under_cancellation_injection(seed):
    res = lab.run(commit_program, 4, 12, 12, seed=seed)
    res.check()
    tally = check_commit(res.value)
    assert sum(tally.values()) == 4 * 12
    assert tally.get("ok", 0) > 0 and tally.get("cancelled", 0) + tally.get("unknown", 0) > 0


def explore_produce() -> dict:
    """For ``lab.explore``: 2 producers x 4 records, no quota and no chaos (the
    explorer injects the cancellation), a broker that refuses and drops answers."""
    out = produce_program(2, 4, 1, 10 ** 6, 0.2, 0.2, 0.0)
    return {"checked": True, **check_produce(out)}


def explore_commit() -> dict:
    out = commit_program(2, 4, 1, 10 ** 6, 0.3, 0.0)
    return {"checked": True, **check_commit(out)}


@pytest.mark.parametrize("fn,tasks", [(explore_produce, "produce-*"), (explore_commit, "commit-*"),
                                      (explore_submit, "kafka.sender*")],
                         ids=["produce", "commit", "submit-senders"])
def test_explore_cancellation_at_every_checkpoint(fn, tasks):
    """``inject="all"``: one run per checkpoint of the named tasks, the task cancelled
    there; every run must end, pass the oracles and reach the check (``goal``)."""
    r = lab.explore(fn, runs=None, inject="all", inject_tasks=tasks, seed=3,
                    goal=lambda v: bool(v and v.get("checked")))
    assert r.ok, r.failures[0] if r.failures else r
    assert r.injected > 40, r


def test_lab_produce_program_is_deterministic():
    assert lab.check_determinism(produce_program, 3, 4, 5, seed=7) is None
