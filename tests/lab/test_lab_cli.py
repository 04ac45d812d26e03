"""The ``greenrt-lab`` command line as a user meets it: ``--help`` on every subcommand,
the progress bar (only on a terminal: a real pty), ``--all`` grouping, colour and
``NO_COLOR``, the import-error hint. Every command runs in a subprocess, as typed."""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import pytest

import greenrt.lab as lab
from greenrt.lab.cli import build_parser
from greenrt.lab.explorer.results import Failure
from greenrt.lab.failure_groups import group_failures
from greenrt.lab.progress import format_plain
from greenrt.lab.trace import KEY_ENV

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROG = os.path.join(HERE, "cli_programs.py")
#: run the CLI with rich (and so rich-argparse) unimportable: the plain fallbacks
NO_RICH = ("import sys; sys.modules['rich'] = None; sys.modules['rich_argparse'] = None; "
           "from greenrt.lab.cli import main; sys.exit(main(sys.argv[1:]))")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: an SGR sequence that sets a foreground or background colour (bold alone is no colour)
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(KEY_ENV, None)
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    env.update(extra)
    return env


def cli(*args: str, rich: bool = True, **env: str) -> subprocess.CompletedProcess:
    pre = [sys.executable, "-m", "greenrt.lab.cli"] if rich else [sys.executable, "-c", NO_RICH]
    return subprocess.run([*pre, *args], capture_output=True, text=True, env=_env(**env),
                          cwd=ROOT, timeout=180)


def cli_on_pty(*args: str, rich: bool = True, stdout_tty: bool = False,
               **env: str) -> tuple[int, str, str]:
    """Run the CLI with stderr (and, with ``stdout_tty``, stdout) on a pseudo-terminal
    of 120 columns; returns (status, what the terminal got, stdout when piped)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    pre = [sys.executable, "-m", "greenrt.lab.cli"] if rich else [sys.executable, "-c", NO_RICH]
    p = subprocess.Popen([*pre, *args], stdout=slave if stdout_tty else subprocess.PIPE,
                         stderr=slave, stdin=subprocess.DEVNULL, cwd=ROOT,
                         env=_env(**{"TERM": "xterm-256color", **env}))
    os.close(slave)
    got = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    chunk = b""
                if not chunk:
                    break
                got += chunk
            elif p.poll() is not None:
                break
        out = p.stdout.read().decode() if p.stdout is not None else ""
        status = p.wait(timeout=180)
    finally:
        os.close(master)
        if p.stdout is not None:
            p.stdout.close()
    return status, got.decode("utf-8", "replace"), out


# -- --help -------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_subcommand_has_help_with_description_defaults_and_examples():
    parser = build_parser()
    subs = _subcommands(parser)
    assert set(subs) == {"run", "replay", "verify", "show", "explore", "shrink", "timeline",
                         "diff"}
    for name, sp in subs.items():
        text = " ".join(sp.format_help().split())
        assert sp.description and " ".join(sp.description.split())[:40] in text, name
        assert "examples:" in text and f"greenrt-lab {name} " in text, name
        for action in sp._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS \
                    or "-h" in action.option_strings:
                continue
            # every option says its default (or that it is required); a real value is
            # printed as it is
            assert "default" in action.help or action.required, (name, action.dest)
            if action.default not in (None, False):
                assert f"(default: {action.default})" in text, (name, action.dest)


@pytest.mark.parametrize("rich", [True, False], ids=["rich-argparse", "plain-argparse"])
def test_help_as_typed_shows_defaults_and_an_example(rich):
    p = cli("explore", "--help", rich=rich)
    assert p.returncode == 0, p.stderr
    text = " ".join(p.stdout.split())
    for expected in ("(default: 100)", "(default: 200000)", "(default: portfolio)",
                     "(default: *)", "examples:", "greenrt-lab explore tests/programs.py:",
                     "Run the program under many schedules"):
        assert expected in text, expected
    assert "\x1b[" not in p.stdout  # not a terminal: no colour codes either way
    top = cli("--help", rich=rich)
    assert top.returncode == 0 and "greenrt-lab COMMAND --help" in top.stdout


def test_help_on_a_terminal_is_coloured_unless_no_color():
    status, term, _ = cli_on_pty("timeline", "--help", stdout_tty=True)
    assert status == 0 and "--no-replay" in ANSI.sub("", term)
    assert COLOUR.search(term), "rich-argparse on a colour terminal uses colour"
    status, term, _ = cli_on_pty("timeline", "--help", stdout_tty=True, NO_COLOR="1")
    assert status == 0 and "--no-replay" in term
    assert not COLOUR.search(term), "NO_COLOR: no colour codes"


# -- progress -------------------------------------------------------------------------------


EXPLORE = ("explore", f"{PROG}:two_bugs", "--runs", "60", "--strategy", "random", "--all")


def test_no_progress_output_when_stderr_is_not_a_terminal():
    p = cli(*EXPLORE)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stderr == ""  # no bar, no carriage returns, nothing
    assert "60 runs" in p.stdout and "\x1b[" not in p.stdout


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
def test_progress_bar_with_rate_and_eta_on_a_terminal(rich):
    status, term, out = cli_on_pty(*EXPLORE, rich=rich)
    assert status == 1, term + out
    plain = ANSI.sub("", term)
    assert "explore" in plain and "60/60" in plain  # the bar ends complete
    assert re.search(r"\d+\.\d runs/s", plain), plain[-400:]
    assert "eta" in plain and "failed" in plain
    if not rich:
        assert "[" + "#" * 30 + "]" in plain
    # the results stay on stdout (a pipe here): uncoloured, no bar in them
    assert "distinct failures" in out and "runs/s" in out and "\r" not in out
    assert "\x1b[" not in out


def test_no_progress_flag_silences_the_bar_on_a_terminal():
    status, term, out = cli_on_pty(*EXPLORE, "--no-progress")
    assert status == 1 and "distinct failures" in out
    assert term == ""


def test_shrink_draws_its_bar_only_on_a_terminal():
    res = lab.explore(_load("two_bugs"), runs=5, strategy="random", entry=(f"{PROG}:two_bugs",
                                                                           None))
    token = res.failures[0].token
    piped = cli("shrink", token, "--max-runs", "20")
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    status, term, out = cli_on_pty("shrink", token, "--max-runs", "20")
    assert status == 0 and out.strip().splitlines()[-1].startswith("glab1.")
    plain = ANSI.sub("", term)
    assert "shrink" in plain and re.search(r"\d+\.\d runs/s", plain), plain[-400:]


def test_plain_bar_format():
    assert format_plain("explore", 25, 100, 2, 5.0) == (
        "explore [#######.......................] 25/100 runs, 2 failed, 5.0 runs/s, eta 15s")
    assert format_plain("explore", 7, 0, 0, 2.0) == "explore 7 runs, 0 failed, 3.5 runs/s"


# -- colour -----------------------------------------------------------------------------------


def test_results_are_coloured_on_a_colour_terminal_and_not_with_no_color():
    args = ("run", f"{PROG}:two_bugs", "--seed", "0")
    status, term, _ = cli_on_pty(*args, stdout_tty=True)
    assert status == 1 and "FAILED" in term
    assert COLOUR.search(term), "a colour terminal gets colour"
    status, term, _ = cli_on_pty(*args, stdout_tty=True, NO_COLOR="1")
    assert status == 1 and "FAILED" in term
    assert not COLOUR.search(term), "NO_COLOR is respected (bold may stay)"
    status, term, _ = cli_on_pty(*args, stdout_tty=True, TERM="dumb")
    assert status == 1 and "FAILED" in term and not COLOUR.search(term), "a dumb terminal"


def test_long_tokens_are_never_wrapped_on_a_terminal():
    status, term, _ = cli_on_pty("explore", f"{PROG}:two_bugs", "--runs", "5", "--strategy",
                                 "random", "--no-progress", stdout_tty=True, NO_COLOR="1")
    assert status == 1
    tokens = re.findall(r"greenrt-lab replay (glab1\.\S+)", term)
    assert tokens and len(tokens[0]) > 120  # longer than the terminal, still one word
    assert lab.token.decode(tokens[0]).signature


# -- --all ------------------------------------------------------------------------------------


def _load(name: str):
    from greenrt.lab.replay import load_entry

    return load_entry(f"{PROG}:{name}")


def test_all_groups_identical_failures_one_token_and_a_count_each():
    p = cli(*EXPLORE)
    assert p.returncode == 1, p.stdout + p.stderr
    # the same exploration in-process: what the groups must add up to
    res = lab.explore(_load("two_bugs"), runs=60, strategy="random", stop_on_failure=False,
                      entry=(f"{PROG}:two_bugs", None))
    expected = collections.Counter(", ".join(f.signature) for f in res.failures)
    assert len(expected) == 2 and sum(expected.values()) == 60  # both bugs, every run fails
    heads = re.findall(r"^(\d+) runs? failed with (.+?), found by", p.stdout, re.M)
    assert {sig: int(n) for n, sig in heads} == dict(expected)
    assert "2 distinct failures in 60 failing runs" in p.stdout
    tokens = re.findall(r"^  replay: greenrt-lab replay (glab1\.\S+)$", p.stdout, re.M)
    assert len(tokens) == 2  # one token per group, not one per failing run
    for (_, sig), tok in zip(heads, tokens, strict=True):
        assert ", ".join(lab.token.decode(tok).signature) == sig
        r = cli("replay", tok)
        assert r.returncode == 0 and f"failure: {sig}" in r.stdout, r.stdout + r.stderr


def test_without_all_the_first_failure_stops_the_exploration():
    p = cli(*EXPLORE[:-1])
    assert p.returncode == 1
    assert "1 FAILED" in p.stdout and "distinct" not in p.stdout
    assert len(re.findall(r"greenrt-lab replay glab1\.", p.stdout)) == 1


def test_group_failures_counts_by_signature_in_first_found_order():
    fs = [Failure(3, ["deadlock"], "T3", ""), Failure(4, ["error:ValueError"], "T4", ""),
          Failure(5, ["deadlock"], "T5", ""), Failure(6, ["deadlock"], "T6", ""),
          Failure(9, ["deadlock", "error:ValueError"], "T9", "")]
    groups = group_failures(fs, ["pct:2", "random", "random", "pct:2", "dfs"])
    assert [(g.signature, g.count, g.token) for g in groups] == [
        (("deadlock",), 3, "T3"), (("error:ValueError",), 1, "T4"),
        (("deadlock", "error:ValueError"), 1, "T9")]
    assert groups[0].strategies == ["pct:2", "random"] and groups[0].indices == [3, 5, 6]
    text = "\n".join(groups[0].describe())
    assert text.startswith("3 runs failed with deadlock, found by pct:2, random")
    assert "also runs 5-6" in text and text.count("greenrt-lab replay T3") == 1


# -- entries ----------------------------------------------------------------------------------


def _script(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The installed ``greenrt-lab`` script: unlike ``python -m``, it does not put the
    current folder on sys.path (what a user typing the command gets)."""
    exe = os.path.join(os.path.dirname(sys.executable), "greenrt-lab")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=_env(**env),
                          cwd=ROOT, timeout=180)


def test_a_module_that_cannot_be_imported_says_how_to_fix_it(tmp_path):
    p = _script("run", "no_such_module_xyz:main")
    assert p.returncode == 2
    assert "PYTHONPATH=." in p.stderr and "path/to/file.py:main" in p.stderr, p.stderr
    # the module is a file under the current folder: the hint names the file form
    p = _script("run", "tests.lab.cli_programs:fine")
    assert p.returncode == 2, p.stdout
    assert "(here: tests/lab/cli_programs.py:fine)" in p.stderr, p.stderr
    ok = _script("run", "tests.lab.cli_programs:fine", PYTHONPATH=".")
    assert ok.returncode == 0 and ": ok" in ok.stdout, ok.stderr
    # the module is found but an import inside it fails: that error, not the hint
    (tmp_path / "broken_mod.py").write_text("import no_such_dependency_xyz\n")
    p = _script("run", "broken_mod:main", PYTHONPATH=str(tmp_path))
    assert p.returncode == 2 and "failed inside the module" in p.stderr, p.stderr
    assert "no_such_dependency_xyz" in p.stderr and "PYTHONPATH=." not in p.stderr


def test_the_file_form_needs_no_pythonpath():
    p = _script("run", "tests/lab/cli_programs.py:fine")
    assert p.returncode == 0 and ": ok" in p.stdout, p.stdout + p.stderr


def test_program_text_is_never_read_as_markup_on_a_terminal():
    status, term, _ = cli_on_pty("run", f"{PROG}:markup_error", stdout_tty=True)
    assert status == 1
    assert "[bold red]not markup[/] :smile:" in ANSI.sub("", term), term
