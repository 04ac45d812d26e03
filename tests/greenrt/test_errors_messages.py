"""Misuse errors say what to do (issue 21, "Error messages").

Each test provokes one mistake a new user makes and asserts the key part of the
message: the fix, not only the symptom.
"""

import threading

import pytest

import greenrt
from greenrt import InvariantViolation, NoHubError, RegionClosedError

# -- regions ------------------------------------------------------------------------


def test_spawn_on_a_region_never_entered_says_use_with(run):
    def main():
        r = greenrt.region(name="workers")
        r.spawn(greenrt.checkpoint)

    with pytest.raises(RegionClosedError) as ei:
        run(main)
    msg = str(ei.value)
    assert "never entered" in msg
    assert "with greenrt.region() as r:" in msg
    assert "'workers'" in msg


def test_spawn_on_a_closed_region_names_it_and_where_it_was_opened(run):
    def main():
        with greenrt.region(name="done") as r:
            pass
        r.spawn(greenrt.checkpoint)

    with pytest.raises(RegionClosedError) as ei:
        run(main)
    msg = str(ei.value)
    assert "'done'" in msg and "is closed" in msg
    assert f"opened at {__file__}:" in msg


def test_region_entered_but_never_exited_names_region_and_site(run):
    def main():
        r = greenrt.region(name="leaky")
        r.__enter__()  # line recorded as the opening site
        return r

    with pytest.raises(InvariantViolation) as ei:
        run(main)
    msg = str(ei.value)
    assert "region" in msg and "'leaky'" in msg and "never exited" in msg
    line = main.__code__.co_firstlineno + 2
    assert f"opened at {__file__}:{line} in main" in msg
    assert "with greenrt.region() as r:" in msg


# -- no hub in this thread ----------------------------------------------------------


def _in_plain_thread(fn):
    out = []

    def body():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    th = threading.Thread(target=body, name="plain")
    th.start()
    th.join()
    return out[0] if out else None


@pytest.mark.parametrize("call", [
    pytest.param(lambda: greenrt.sleep(0.01), id="sleep"),
    pytest.param(lambda: greenrt.checkpoint(), id="checkpoint"),
    pytest.param(lambda: greenrt.Event().wait(), id="Event.wait"),
    pytest.param(lambda: greenrt.Lock().acquire(), id="Lock.acquire"),
    pytest.param(lambda: greenrt.Semaphore(0).acquire(), id="Semaphore.acquire"),
    pytest.param(lambda: greenrt.channel(1)[1].recv(), id="channel.recv"),
    pytest.param(lambda: greenrt.channel(1)[0].send(1), id="channel.send"),
    pytest.param(lambda: greenrt.net.open_tcp("127.0.0.1", 9), id="net.open_tcp"),
    pytest.param(lambda: greenrt.to_thread(len, ()), id="to_thread"),
])
def test_blocking_call_from_a_plain_thread_says_run_or_from_thread(call):
    e = _in_plain_thread(call)
    assert isinstance(e, NoHubError), repr(e)
    msg = str(e)
    assert "'plain'" in msg
    assert "greenrt.run" in msg and "greenrt.from_thread" in msg


def test_blocking_call_from_a_to_thread_worker_says_from_thread(run):
    def worker():
        try:
            greenrt.sleep(0.01)
        except NoHubError as e:
            return str(e)

    msg = run(greenrt.to_thread, worker)
    assert "to_thread worker" in msg and "greenrt.from_thread(fn" in msg
