"""Helpers shared by the runtime core tests."""

import pytest

import greenrt


class Recorder(greenrt.TraceRing):
    """A TraceRing with query helpers used by the tests."""

    def __init__(self):
        super().__init__(capacity=1_000_000)

    def of(self, kind, **match):
        out = []
        for e in self.events(kind):
            if all(e.data.get(k) == v if k not in ("task", "region") else getattr(e, k) == v
                   for k, v in match.items()):
                out.append(e)
        return out

    def cancel_phases(self, task_id):
        """The cancel.* event kinds of one task, in order."""
        return [e.kind for e in self.events() if e.task == task_id and e.kind.startswith("cancel.")]


@pytest.fixture
def rec():
    return Recorder()


@pytest.fixture
def run(rec):
    """Run a main function on the real hub with the recorder attached."""

    def _run(fn, *args, **kw):
        return greenrt.run(fn, *args, instruments=[rec], **kw)

    return _run
