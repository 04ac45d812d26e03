"""Tracing: events, instruments, ring buffer, silence on stdout/stderr."""

import greenrt


def test_event_stream_for_a_small_program(run, rec):
    def child():
        greenrt.checkpoint()

    def main():
        with greenrt.region(name="r") as r:
            r.spawn(child)

    run(main)
    kinds = rec.kinds()
    for k in ("task.spawn", "task.start", "task.switch", "checkpoint", "task.complete",
              "region.open", "region.state", "region.close"):
        assert k in kinds, k
    seqs = [e.seq for e in rec.events()]
    assert seqs == list(range(len(seqs)))
    states = [e.data["state"] for e in rec.of("region.state")]
    assert states[-3:] == ["closing", "finalizing", "closed"]


def test_no_output_on_stdout_or_stderr(capfd):
    def bad():
        raise ValueError("x")

    def main():
        with greenrt.region(policy="collect_all", leak_policy="log") as r:
            r.spawn(bad)
            r.spawn(lambda: greenrt.reserve("ack"))
            t = r.spawn(greenrt.sleep_forever)
            greenrt.checkpoint()
            t.cancel()

    try:
        greenrt.run(main)
    except ExceptionGroup:
        pass
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_ring_is_bounded():
    ring = greenrt.TraceRing(capacity=10)

    def main():
        for _ in range(100):
            greenrt.checkpoint()

    greenrt.run(main, instruments=[ring])
    assert len(ring) == 10 and ring.dropped > 0


def test_instrument_can_be_added_and_removed_while_running():
    seen = []

    def main():
        hub = greenrt.lowlevel.current_hub()
        hub.add_instrument(seen.append)
        greenrt.checkpoint()
        hub.remove_instrument(seen.append)
        n = len(seen)
        greenrt.checkpoint()
        return n

    n = greenrt.run(main)
    assert n > 0 and len(seen) == n


def test_tracing_flag_is_off_without_instruments():
    def main():
        return greenrt.lowlevel.current_hub()._tracing

    assert greenrt.run(main) is False


def test_protocol_error_events_via_emit(rec):
    def main():
        greenrt.lowlevel.current_hub().emit("protocol.error", protocol="x", code="bad_frame")

    greenrt.run(main, instruments=[rec])
    (ev,) = rec.of("protocol.error")
    assert ev.data == {"protocol": "x", "code": "bad_frame"} and ev.task == 1
