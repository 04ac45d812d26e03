"""The typed API, checked by running mypy (strict) on small user programs.

Each program is type-checked, not run: the assertions are on what mypy reports
(``reveal_type`` notes and errors, by line). They fail if ``Task`` stops being
generic, if ``spawn``/``run``/``join``/``to_thread`` stop carrying the function's
result type, or if a channel stops checking what is sent on it.
"""

import re
import textwrap
from pathlib import Path

import mypy.api
import pytest

ROOT = Path(__file__).resolve().parents[2]

# One program, so mypy (a few seconds) runs once for all the reveal_type checks.
# ``# R: <type>`` marks a line whose reveal_type must show that type;
# ``# E: <code>`` marks a line that must be an error with that error code.
PROGRAM = '''
import functools

import greenrt
from greenrt import Outcome, Receiver, Sender, Task
from greenrt.channel import OneshotReceiver, OneshotSender


def fetch(url: str, retries: int = 3) -> bytes:
    return url.encode()


def count() -> int:
    return 1


def name() -> str:
    return "x"


def in_thread() -> int:
    reveal_type(greenrt.from_thread(fetch, "u"))  # R: bytes
    return 0


def main() -> int:
    with greenrt.region() as r:
        t = r.spawn(fetch, "http://x")
        reveal_type(t)  # R: greenrt._task.Task[bytes]
        reveal_type(t.join())  # R: bytes
        reveal_type(r.spawn(fetch, "u", 2).join())  # R: bytes
        out = r.spawn(count).outcome
        assert out is not None
        reveal_type(out.unwrap())  # R: int
        reveal_type(r.spawn(functools.partial(fetch, retries=1), "u"))  # R: greenrt._task.Task[bytes]
        r.spawn(fetch, 42)  # E: arg-type
        r.spawn(fetch)  # E: arg-type
        r.spawn(count, name="counter", budget=greenrt.Budget(poll_quota=10))
        r.spawn(fetch, "u", "v")  # E: arg-type
        wrong: Task[str] = r.spawn(count)  # E: arg-type
    tx: Sender[int]
    rx: Receiver[int]
    tx, rx = greenrt.channel(4)
    tx.send(1)
    tx.send("one")  # E: arg-type
    reveal_type(rx.recv())  # R: int
    for item in rx:
        reveal_type(item)  # R: int
    w_tx, w_rx = greenrt.watch(0.5)
    reveal_type(w_rx.get())  # R: float
    w_tx.send("x")  # E: arg-type
    reveal_type(greenrt.race(count, name))  # R: int | str
    reveal_type(greenrt.first_ok(count, count))  # R: int
    reveal_type(greenrt.join(count, name))  # R: list[int | str]
    reveal_type(greenrt.timeout(1.0, fetch, "u"))  # R: bytes
    greenrt.timeout(1.0, fetch, 1)  # E: arg-type
    reveal_type(greenrt.hedge(count, 0.1))  # R: int
    reveal_type(greenrt.retry(name, idempotent=True))  # R: str
    reveal_type(greenrt.to_thread(fetch, "u"))  # R: bytes
    greenrt.to_thread(fetch, b"u")  # E: arg-type
    reveal_type(Outcome.ok(3).unwrap())  # R: int
    failed: Outcome[int] = Outcome.err(ValueError("x"))
    reveal_type(failed.join(Outcome.ok("s")).unwrap())  # R: int | str
    o_tx: OneshotSender[str]
    o_rx: OneshotReceiver[str]
    o_tx, o_rx = greenrt.oneshot()
    o_tx.send(1)  # E: arg-type
    reveal_type(o_rx.recv())  # R: str
    reveal_type(greenrt.to_thread(in_thread))  # R: int
    with greenrt.move_on_after(1) as scope:
        greenrt.sleep(0.1)
    reveal_type(scope.cancelled_caught)  # R: bool
    with greenrt.Lock():
        pass
    cond = greenrt.Condition()
    with cond:
        reveal_type(cond.wait_for(count))  # R: int
    return 0


reveal_type(greenrt.run(main))  # R: int
reveal_type(greenrt.run(fetch, "u"))  # R: bytes
greenrt.run(fetch, 1)  # E: arg-type
greenrt.run(main, handle_signals=False, leak_policy="log")
'''


def _expectations(src: str) -> dict[int, tuple[str, str]]:
    out = {}
    for n, line in enumerate(src.splitlines(), 1):
        m = re.search(r"# ([RE]): (.+)$", line)
        if m:
            out[n] = (m.group(1), m.group(2).strip())
    return out


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module's mypy runs: greenrt is analysed once."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(tmp_path: Path, src: str, monkeypatch: pytest.MonkeyPatch,
          cache: Path) -> dict[int, list[str]]:
    prog = tmp_path / "prog.py"
    prog.write_text(src)
    # The repository's own greenrt (an editable install is an import hook mypy cannot
    # follow): MYPYPATH comes before site-packages. Its modules are analysed but, as
    # for an installed package, not reported on (scripts/test.sh checks greenrt).
    monkeypatch.setenv("MYPYPATH", str(ROOT))
    stdout, stderr, _ = mypy.api.run([
        "--strict", "--follow-imports=silent", "--no-error-summary", "--show-error-codes",
        "--hide-error-context",
        "--cache-dir", str(cache), "--config-file", "", str(prog),
    ])
    assert not stderr, stderr
    by_line: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        m = re.match(rf"{re.escape(str(prog))}:(\d+): (.*)$", line)
        assert m, f"unexpected mypy output: {line}"
        by_line.setdefault(int(m.group(1)), []).append(m.group(2))
    return by_line


def test_user_program_types(tmp_path, monkeypatch, mypy_cache):
    src = textwrap.dedent(PROGRAM)
    expected = _expectations(src)
    got = _mypy(tmp_path, src, monkeypatch, mypy_cache)
    problems = []
    for n, (kind, what) in expected.items():
        msgs = got.get(n, [])
        if kind == "R":
            want = f'note: Revealed type is "{what}"'
            if want not in msgs:
                problems.append(f"line {n}: wanted {want!r}, got {msgs}")
        elif not any(m.startswith("error:") and m.endswith(f"[{what}]") for m in msgs):
            problems.append(f"line {n}: wanted an error [{what}], got {msgs}")
    # Nothing else: no error on a line that expects none (the typed API does not
    # reject correct code), and no stray notes.
    for n, msgs in got.items():
        if n not in expected:
            problems.append(f"line {n}: unexpected {msgs}")
        elif expected[n][0] == "R" and any(m.startswith("error:") for m in msgs):
            problems.append(f"line {n}: unexpected {msgs}")
    assert not problems, "\n".join(problems + ["", src])


def test_untyped_task_is_an_error_in_strict_mode(tmp_path, monkeypatch, mypy_cache):
    """``Task`` is generic: a bare ``Task`` annotation is a missing type argument."""
    src = textwrap.dedent('''
        import greenrt

        def f(t: greenrt.Task) -> None: ...
        def g(t: greenrt.Task[int]) -> int:
            return t.join()
    ''')
    got = _mypy(tmp_path, src, monkeypatch, mypy_cache)
    assert list(got) == [4], got
    assert got[4][0].endswith("[type-arg]"), got


def test_wheel_ships_py_typed(tmp_path):
    """PEP 561: the wheel carries ``greenrt/py.typed``; ``greenrt.protocols`` and
    ``greenrt.lab`` are installed inside ``greenrt/``, so that one marker covers them."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("greenrt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "greenrt/py.typed" in names
    assert "greenrt/protocols/__init__.py" in names and "greenrt/lab/__init__.py" in names
    assert not any(n.startswith(("protocols/", "lab/")) for n in names)
