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


def pytest_generate_tests(metafunc):
    """Tests that use ``run`` run twice: traced (a recorder attached) and untraced.
    Attaching any instrument turns the hub's inlined fast paths off (``hub._plain``),
    so the untraced run is the one that executes the code users run (issue 12 §3).
    Tests that read the recorder (``rec``) need the trace and run traced only."""
    if "run" in metafunc.fixturenames:
        modes = ["traced"] if "rec" in metafunc.fixturenames else ["traced", "untraced"]
        metafunc.parametrize("hub_mode", modes)


@pytest.fixture
def run(hub_mode, request):
    """Run a main function on the real hub, with the recorder attached (``traced``) or
    with no instrument at all (``untraced``: the fast paths are on, which is checked)."""
    if hub_mode == "untraced":
        def _run(fn, *args, **kw):
            def checked(*a):
                hub = greenrt.lowlevel.current_hub()
                assert hub._plain, "untraced run without the fast paths"
                return fn(*a)
            return greenrt.run(checked, *args, **kw)
        return _run
    rec = request.getfixturevalue("rec")

    def _run(fn, *args, **kw):
        return greenrt.run(fn, *args, instruments=[rec], **kw)

    return _run
