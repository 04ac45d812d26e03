"""greenrt.fs on real files (tmp_path) and a real FIFO for blocking reads."""

import os
import threading

import pytest

import greenrt
from greenrt import Cancelled
from greenrt.fs import File, Path, open_file, wrap_file

GUARD = 10.0


def settle(pred, limit=100_000):
    for _ in range(limit):
        if pred():
            return
        greenrt.sleep(0.0005)
    raise AssertionError("never settled")


def test_write_read_roundtrip_seek_tell_iteration(tmp_path):
    p = tmp_path / "a.txt"

    def main():
        with open_file(p, "w", encoding="utf-8") as f:
            assert isinstance(f, File) and f.writable() and not f.readable()
            assert f.write("one\n") == 4
            f.writelines(["two\n", "three\n"])
            f.flush()
        assert f.closed
        f.close()  # idempotent
        with open_file(p, "r", encoding="utf-8") as f:
            assert f.readline() == "one\n"
            pos = f.tell()
            rest = list(f)
            f.seek(pos)
            again = f.read()
            assert f.name == os.fspath(p) and f.mode == "r" and f.encoding == "utf-8"
        with open_file(p, "rb") as f:
            buf = bytearray(3)
            assert f.readinto(buf) == 3 and bytes(buf) == b"one"
            assert f.peek(1)[:1] == b"\n"
            assert f.read1(100).startswith(b"\n")
        with open_file(p, "r+b") as f:
            f.truncate(3)
        return rest, again

    rest, again = greenrt.run(main)
    assert rest == ["two\n", "three\n"] and again == "two\nthree\n"
    assert p.read_bytes() == b"one"


def test_open_errors_propagate(tmp_path):
    def main():
        with pytest.raises(FileNotFoundError):
            open_file(tmp_path / "missing")
        with pytest.raises(IsADirectoryError):
            open_file(tmp_path, "w")

    greenrt.run(main)


def test_path_helpers(tmp_path):
    def main():
        root = Path(tmp_path)
        d = root / "sub"
        assert not d.exists()
        d.mkdir()
        assert d.is_dir() and not d.is_file()
        f = d / "x.txt"
        f.write_text("hello")
        assert f.read_text() == "hello" and f.read_bytes() == b"hello"
        assert f.stat().st_size == 5
        assert (f.name, f.suffix, f.stem, f.parent) == ("x.txt", ".txt", "x", d)
        g = f.rename(d / "y.txt")
        assert isinstance(g, Path) and g.exists() and not f.exists()
        assert [p.name for p in d.iterdir()] == ["y.txt"]
        assert [p.name for p in root.rglob("*.txt")] == ["y.txt"]
        with g.open("a") as fh:
            fh.write(" world")
        assert g.read_text() == "hello world"
        assert g.resolve() == Path(os.path.realpath(g))
        assert g.relative_to(root) == Path("sub", "y.txt")
        g.unlink()
        d.rmdir()
        assert not d.exists() and os.fspath(d) == str(tmp_path / "sub")
        return "ok"

    assert greenrt.run(main) == "ok"


def test_operations_run_in_threads_and_hub_stays_responsive(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []

    def reader():
        with open_file(fifo, "rb", buffering=0) as f:  # open blocks until a writer opens
            got.append(f.read(5))

    def main():
        ticks = 0
        with greenrt.region() as r:
            r.spawn(reader)
            # The reader's open is blocked in a thread; the hub keeps running us.
            for _ in range(10):
                greenrt.sleep(0)
                ticks += 1
            w = greenrt.to_thread(open, fifo, "wb", 0)
            greenrt.to_thread(w.write, b"abcde")
            greenrt.to_thread(w.close)
        return ticks

    assert greenrt.run(main) == 10
    assert got == [b"abcde"]


def test_cancelled_read_loses_no_data(tmp_path):
    """A read in progress completes and returns its data; Cancelled comes after."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    log = []
    opened = threading.Event()

    def reader(f):
        try:
            data = f.read(5)
            log.append(("returned", data))
            greenrt.checkpoint()
        except Cancelled:
            log.append("cancelled")
            raise

    def main():
        w_holder = []

        def open_writer():
            w_holder.append(open(fifo, "wb", buffering=0))
            opened.set()

        with greenrt.region() as r:
            r.spawn(greenrt.to_thread, open_writer)
            f = open_file(fifo, "rb", buffering=0)
            assert opened.wait(GUARD)
            t = r.spawn(reader, f)
            settle(lambda: f.statistics()["lock"]["locked"])  # read started in its thread
            for _ in range(5):
                greenrt.sleep(0)
            t.cancel()
            for _ in range(5):
                greenrt.sleep(0)
            assert not t.done  # still waiting for its read
            greenrt.to_thread(w_holder[0].write, b"12345")
        f.close()
        greenrt.to_thread(w_holder[0].close)
        return t

    t = greenrt.run(main)
    assert t.outcome.is_cancelled
    assert log == [("returned", b"12345"), "cancelled"]


def test_cancelled_before_start_does_nothing(tmp_path):
    p = tmp_path / "b.bin"

    def main():
        f = open_file(p, "wb")
        greenrt.current_task().cancel()
        with pytest.raises(Cancelled):
            f.write(b"never")
        f.close()  # close is never skipped
        assert f.closed
        return "ok"

    assert greenrt.run(main) == "ok"
    assert p.read_bytes() == b""


def test_one_file_serializes_operations_in_call_order(tmp_path):
    p = tmp_path / "log.txt"

    def main():
        with open_file(p, "a") as f:
            with greenrt.region() as r:
                for i in range(20):
                    r.spawn(f.write, f"{i}\n")
        return "ok"

    greenrt.run(main)
    assert p.read_text().split() == [str(i) for i in range(20)]


def test_wrap_file(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("wrapped")

    def main():
        with wrap_file(open(p)) as f:
            return f.read(), f.wrapped.closed

    assert greenrt.run(main) == ("wrapped", False)


def test_waiting_for_a_thread_token_is_cancellable(tmp_path):
    p = tmp_path / "c.bin"
    go = threading.Event()

    def main():
        lim = greenrt.threads.default_thread_limiter()
        lim.total_tokens = 1
        f = open_file(p, "wb")
        with greenrt.region() as r:
            r.spawn(greenrt.to_thread, go.wait, GUARD)  # holds the only token
            settle(lambda: lim.borrowed_tokens == 1)
            w = r.spawn(f.write, b"never")
            settle(lambda: lim.statistics()["tasks_waiting"] == 1)
            w.cancel()
            settle(lambda: w.done)
            go.set()
        f.close()
        return w

    w = greenrt.run(main)
    assert w.outcome.is_cancelled
    assert p.read_bytes() == b""
