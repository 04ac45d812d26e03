"""Lab II command line: explore -> token -> replay -> shrink; timeline HTML; diff."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import greenrt
import greenrt.lab as lab
from greenrt.lab.timeline import render_html
from greenrt.lab.trace import KEY_ENV

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROG = os.path.join(HERE, "explore_programs.py")


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(KEY_ENV, None)
    return subprocess.run([sys.executable, "-m", "greenrt.lab.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def test_cli_explore_replay_shrink(tmp_path):
    corpus = str(tmp_path / "corpus")
    p = cli("explore", f"{PROG}:declared_lost_update", "--runs", "50", "--seed", "1",
            "--strategy", "dpor", "--corpus", corpus)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAILED" in p.stdout and p.stderr == ""  # no progress bar: stderr is no terminal
    token = re.search(r"greenrt-lab replay (glab1\.\S+)", p.stdout).group(1)
    r = cli("replay", token, "--record", str(tmp_path / "fail.jsonl"))
    assert r.returncode == 0 and "reproduced exactly" in r.stdout, r.stdout + r.stderr
    s = cli("shrink", token, "--max-runs", "30")
    assert s.returncode == 0, s.stderr
    small = s.stdout.strip().splitlines()[-1]
    assert small.startswith("glab1.") and "still fails: error:AssertionError" in s.stdout
    r2 = cli("replay", small)
    assert r2.returncode == 0 and "reproduced exactly" in r2.stdout
    bad = cli("replay", "glab1.AAAA")
    assert bad.returncode == 2 and "token" in bad.stderr
    tl = cli("timeline", str(tmp_path / "fail.jsonl"), "--html", str(tmp_path / "t.html"))
    assert tl.returncode == 0, tl.stderr
    page = (tmp_path / "t.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    for t in (1, 2, 3):
        assert f">T{t} " in page  # one lane per task


def test_cli_diff_reports_the_first_divergence(tmp_path):
    a, b, c = (str(tmp_path / f"{n}.jsonl") for n in "abc")
    lab.run(_switchy, seed=1, record=a)
    lab.run(_switchy, seed=1, record=b)
    lab.run(_switchy, seed=2, record=c)
    same = cli("diff", a, b)
    assert same.returncode == 0 and "no divergence" in same.stdout
    d = cli("diff", a, c)
    assert d.returncode == 1 and "first divergence at step" in d.stdout
    step = int(re.search(r"step (\d+)", d.stdout).group(1))
    ra = lab.trace.read(a).records
    rc = lab.trace.read(c).records
    assert ra[:step] == rc[:step] and ra[step] != rc[step]


def _switchy() -> None:
    def w() -> None:
        for _ in range(3):
            greenrt.checkpoint()

    with greenrt.region() as r:
        for i in range(3):
            r.spawn(w, name=f"w{i}")


def test_timeline_escapes_names_and_draws_cancellation_and_obligations():
    def prog() -> None:
        def victim() -> None:
            ob = greenrt.reserve("lease")
            try:
                greenrt.sleep_forever()
            finally:
                ob.abort("cancelled")

        with greenrt.region() as r:
            t = r.spawn(victim, name="<script>alert(1)</script>")
            greenrt.sleep(1)
            t.cancel()

    res = lab.run(prog, seed=0)
    assert res.ok, res.summary()
    page = render_html(res.trace.header, res.trace.records, res.trace.footer)
    assert "<script>" not in page and "&lt;script&gt;" in page
    for label in ("cancel request", "cancel delivered", "obligation reserved",
                  "obligation aborted", "region open", "region close", "spawn", "complete"):
        assert f"<title>{label}" in page, label
