"""The blocked-hub watchdog (issue 12 §1): a task that never reaches a checkpoint
cannot be preempted, but it is reported, with its stack."""

from __future__ import annotations

import logging
import time

import greenrt


def _hog():
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # CPU-bound, no checkpoint
        pass


def test_a_task_that_holds_the_hub_is_reported_with_its_stack(caplog):
    events = []

    def main():
        with greenrt.region() as r:
            r.spawn(_hog, name="hog")
        greenrt.sleep(0.05)  # the queued hub.blocked event is emitted when the hub polls
        return greenrt.lowlevel.current_hub().watchdog.reports

    with caplog.at_level(logging.WARNING, logger="greenrt"):
        reports = greenrt.run(main, watchdog=0.2, instruments=[events.append])
    assert len(reports) == 1 and reports[0]["name"] == "hog"
    assert "_hog" in reports[0]["stack"]
    assert any("is not reaching a checkpoint" in r.getMessage() for r in caplog.records)
    blocked = [e for e in events if e.kind == "hub.blocked"]
    assert len(blocked) == 1 and blocked[0].data["name"] == "hog"


def test_an_idle_hub_is_not_reported(caplog):
    def main():
        greenrt.sleep(0.6)  # the hub waits in the driver: not blocked
        return greenrt.lowlevel.current_hub().watchdog.reports

    with caplog.at_level(logging.WARNING, logger="greenrt"):
        assert greenrt.run(main, watchdog=0.2) == []
    assert not caplog.records


def test_off_by_default():
    def main():
        return getattr(greenrt.lowlevel.current_hub(), "watchdog", None)

    assert greenrt.run(main) is None
