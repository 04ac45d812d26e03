"""The HTML timeline: verdict, failing step, step axis, checkpoints, source lines on
hover (from one replay), cancellation and obligation events on the lanes; and the
page rendered by a real headless Chromium (DevTools protocol), screenshot included.

Chromium is installed by scripts/setup.sh (scripts/apt-packages.txt). Under CI a
missing chromium fails the browser tests; on a developer machine without it they
skip, saying why.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib

import pytest

import greenrt
import greenrt.lab as lab
from greenrt.lab.timeline import MAX_EVENTS, build, render_html, verdict_of_trace
from greenrt.lab.trace import KEY_ENV, read

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROG = os.path.join(HERE, "cli_programs.py")


def _record(tmp_path, name: str, seed: int = 0):
    from greenrt.lab.replay import load_entry

    path = str(tmp_path / f"{name}.jsonl")
    lab.run(load_entry(f"{PROG}:{name}"), seed=seed, record=path, entry=(f"{PROG}:{name}", None))
    return read(path), path


def _titles(page: str) -> list[str]:
    import html

    return [html.unescape(t) for t in re.findall(r"<title>(.*?)</title>", page, re.S)]


def _deadlock() -> None:
    ev = greenrt.Event()
    with greenrt.region() as r:
        r.spawn(ev.wait, name="waiter")


# -- the page, without a browser -----------------------------------------------------------


def test_failing_run_marks_the_verdict_the_failing_step_and_source_lines(tmp_path):
    trace, _ = _record(tmp_path, "cancelled_holder")
    tl = build(trace)
    v = tl.verdict
    assert not v.ok and v.source == "replay" and tl.notes == []
    assert v.lines[0].startswith("error: AssertionError: too early (raised at ")
    assert "cli_programs.py" in v.lines[0] and "assert greenrt.now() > 5" in v.lines[0]
    # the failing step: the main task completing with the error
    main_done = [r["seq"] for r in trace.records if r["kind"] == "task.complete"
                 and r["data"]["outcome"] == "err:AssertionError"]
    assert v.failing_step == main_done[0]
    page = tl.page
    assert f'id="failing-step" data-step="{v.failing_step}"' in page
    assert 'id="verdict" data-ok="false"' in page and "FAILED" in page
    titles = _titles(page)
    # hover: the program's source line that led to each event
    cps = [t for t in titles if t.startswith("checkpoint: ")]
    assert len(cps) == sum(1 for r in trace.records if r["kind"] == "checkpoint")
    assert any("greenrt.sleep(1)" in t and "cli_programs.py:" in t for t in cps), cps
    assert any(t.startswith("obligation reserved: ") and 'greenrt.reserve("lease")' in t
               for t in titles)
    assert any(t.startswith("cancel request: ") and "t.cancel()" in t for t in titles)
    assert any(t.startswith("obligation aborted: ") for t in titles)
    assert any(t.startswith("failing step ") and "too early" in t for t in titles)
    assert tl.sources > 0
    # the step axis: labelled at round steps
    assert re.search(r'class="axis-label" text-anchor="middle">0<', page)
    assert "<script" not in page and "src=" not in page and "href=" not in page


def test_replay_instruments_observe_every_event_and_change_nothing(tmp_path):
    from greenrt.lab.timeline import SourceLines

    trace, path = _record(tmp_path, "cancelled_holder")
    seen: list[int] = []
    lines = SourceLines()
    res = lab.replay(path, instruments=[lambda ev: seen.append(ev.seq), lines])
    assert res.divergence is None and res.final_hash == trace.final_hash
    assert seen == [r["seq"] for r in trace.records]  # each event once, in order
    # a line for the events a task's code caused; none for the hub's own decisions
    choices = [r["seq"] for r in trace.records if r["kind"] == "lab.choice"]
    assert choices and not any(c in lines.lines for c in choices)
    cp = next(r["seq"] for r in trace.records if r["kind"] == "checkpoint")
    assert re.fullmatch(r"\S*cli_programs\.py:\d+ in \w+: \S.*", lines.lines[cp]), lines.lines[cp]


def test_no_replay_draws_from_the_trace_alone(tmp_path):
    trace, path = _record(tmp_path, "cancelled_holder")
    tl = build(trace, replay=False)
    assert tl.sources == 0 and "--no-replay" in tl.notes[0]
    assert tl.verdict.source == "trace" and tl.verdict.lines == ["outcome: err:AssertionError"]
    # no source-line part in any tooltip (an obligation's site is in the trace itself)
    titles = _titles(tl.page)
    assert not any("\nat " in t for t in titles) and not any("greenrt.sleep(1)" in t
                                                              for t in titles)
    out = str(tmp_path / "t.html")
    env = dict(os.environ)
    env.pop(KEY_ENV, None)
    p = subprocess.run([sys.executable, "-m", "greenrt.lab.cli", "timeline", path, "--html",
                        out, "--no-replay"], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "0 with a source line" in p.stdout and f"FAILED at step {tl.verdict.failing_step}" \
        in p.stdout and "note: not replayed" in p.stdout
    p = subprocess.run([sys.executable, "-m", "greenrt.lab.cli", "timeline", path, "--html",
                        out], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 0 and "0 with a source line" not in p.stdout, p.stdout
    assert "greenrt.sleep(1)" in open(out, encoding="utf-8").read()


def test_a_replay_that_cannot_run_is_a_note_not_an_error(tmp_path):
    def local_program() -> None:
        greenrt.checkpoint()

    res = lab.run(local_program, seed=0)
    tl = build(res.trace)
    assert tl.sources == 0 and tl.verdict.ok and tl.verdict.source == "trace"
    assert tl.notes and tl.notes[0].startswith("replay failed (LabError") \
        and "local function" in tl.notes[0]
    assert "replay failed" in tl.page and 'id="failing-step"' not in tl.page


def test_deadlock_verdict_with_and_without_replay():
    res = lab.run(_deadlock, seed=0)
    assert not res.ok
    recs = res.trace.records
    step = next(r["seq"] for r in recs if r["kind"] == "lab.deadlock")
    tl = build(res.trace, fn=_deadlock)
    assert tl.verdict.source == "replay" and tl.verdict.failing_step == step
    assert any(x.startswith("[deadlock] ") for x in tl.verdict.lines)
    v = verdict_of_trace(recs, res.trace.footer)
    assert v.failing_step == step and v.lines[0] == f"[deadlock] at step {step}"
    assert 'class="lab-deadlock"' in tl.page


def test_an_ok_run_has_no_failing_step(tmp_path):
    trace, _ = _record(tmp_path, "fine")
    tl = build(trace)
    assert tl.verdict.ok and tl.verdict.failing_step is None
    assert 'data-ok="true"' in tl.page and 'id="failing-step"' not in tl.page


def test_scope_level_events_go_on_the_lane_of_the_region_owner():
    # a cancel.request without a task: on the lane of the task that opened the region
    header = {"entry": "x:y", "seed": 0, "strategy": "random"}
    recs = [
        {"seq": 0, "t": 0.0, "kind": "task.spawn", "task": 1, "region": 1, "data": {"name": "m"}},
        {"seq": 1, "t": 0.0, "kind": "task.spawn", "task": 2, "region": 1, "data": {"name": "w"}},
        {"seq": 2, "t": 0.0, "kind": "region.open", "task": 2, "region": 7, "data": {}},
        {"seq": 3, "t": 0.0, "kind": "cancel.request", "task": None, "region": 7,
         "data": {"scope": 3, "reason": {"kind": "user"}}},
    ]
    page = render_html(header, recs, {"outcome": "ok"})
    m = re.search(r'<svg x="[^"]+" y="(\d+)" overflow="visible" class="mark cancel-request">',
                  page)
    lane2 = re.findall(r'<line x1="0" y1="(\d+)" x2="100%" y2="\d+" class="lane"/>', page)[2]
    assert m and m.group(1) == lane2


def test_truncation_is_said_on_the_page():
    recs = [{"seq": i, "t": 0.0, "kind": "checkpoint", "task": None, "region": None, "data": {}}
            for i in range(MAX_EVENTS + 5)]
    page = render_html({"entry": "x:y"}, recs, {"outcome": "ok"})
    assert f"the first {MAX_EVENTS} of {MAX_EVENTS + 5} events" in page


# -- the page in a real browser ------------------------------------------------------------------


def _browser_or_skip():
    from headless_chromium import find_chromium

    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/setup.sh installs it "
                        "(scripts/apt-packages.txt)")
        pytest.skip("no chromium on PATH (dev machine): `make setup` installs it; "
                    "under CI this test fails instead")
    return exe


def _png_pixels(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """(width, height, channels, rows) of an 8-bit RGB/RGBA non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    assert ihdr is not None
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    ch = 4 if ctype == 6 else 3
    raw = zlib.decompress(idat)
    stride = w * ch
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, ch, rows


def test_the_driver_sees_console_errors(tmp_path):
    """The browser check can fail: a page with a script error is reported."""
    _browser_or_skip()
    from headless_chromium import Chromium

    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('boom');"
                   "undefined_function_xyz();</script></body></html>")
    with Chromium(tmp_path) as browser:
        page = browser.open(bad.as_uri(), width=400, height=300)
        errors = page.errors()
    assert any("boom" in e for e in errors) and any("undefined_function_xyz" in e
                                                    for e in errors), errors


def test_timeline_renders_in_headless_chromium(tmp_path):
    _browser_or_skip()
    from headless_chromium import Chromium

    trace, path = _record(tmp_path, "cancelled_holder")
    out = tmp_path / "timeline.html"
    env = dict(os.environ)
    env.pop(KEY_ENV, None)
    p = subprocess.run([sys.executable, "-m", "greenrt.lab.cli", "timeline", path, "--html",
                        str(out)], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    step = build(trace).verdict.failing_step
    assert step is not None
    width, height = 1400, 800
    with Chromium(tmp_path) as browser:
        page = browser.open(out.as_uri(), width=width, height=height)
        js = page.evaluate
        assert js("document.title") == "greenrt-lab timeline"
        verdict = js("document.getElementById('verdict').innerText")
        assert "FAILED" in verdict and "AssertionError: too early" in verdict, verdict
        assert f"failing step {step}" in verdict
        fs = js("(() => { const e = document.getElementById('failing-step');"
                " const r = e.getBoundingClientRect();"
                " return {step: e.dataset.step, x: r.left + r.width / 2, top: r.top,"
                " bottom: r.bottom, title: e.querySelector('title').textContent}; })()")
        assert fs["step"] == str(step) and "too early" in fs["title"]
        assert js("document.querySelector('.failing-step-label').firstChild.nodeValue") \
            == f"✖ step {step}"
        n_cp = sum(1 for r in trace.records if r["kind"] == "checkpoint")
        assert js("document.querySelectorAll('.mark.checkpoint').length") == n_cp
        for cls in ("cancel-request", "obligation-reserve", "obligation-abort", "task-spawn",
                    "task-complete", "region-open", "region-close"):
            assert js(f"document.querySelectorAll('.mark.{cls}').length") >= 1, cls
        # checkpoints are drawn, visible, inside the plot
        box = js("(() => { const r = document.querySelector('.mark.checkpoint')"
                 ".getBoundingClientRect(); return [r.width, r.height]; })()")
        assert box[1] >= 10
        # hover text: the source line, from the replay
        cp_titles = js("[...document.querySelectorAll('.mark.checkpoint title')]"
                       ".map(t => t.textContent)")
        assert any("greenrt.sleep(1)" in t for t in cp_titles), cp_titles
        # full width: the chart spans the window (less the body's padding)
        chart_w = js("document.querySelector('.chart').getBoundingClientRect().width")
        assert chart_w >= width - 40, chart_w
        plot_w = js("document.querySelector('.plot').getBoundingClientRect().width")
        assert plot_w >= width - 40 - 200 - 10, plot_w
        # the step axis: labelled ticks, first one 0
        labels = js("[...document.querySelectorAll('.plot .axis-label')].map(t => t.textContent)")
        assert labels[0] == "0" and len(labels) >= 5
        lanes = js("[...document.querySelectorAll('.names .name')].map(t => t.textContent)")
        assert lanes[0].startswith("hub") and any("holder" in x for x in lanes)
        png = page.screenshot(tmp_path / "timeline.png")
        errors = page.errors()
    assert errors == [], errors
    assert not (tmp_path / "timeline.png").is_relative_to(ROOT)
    # the picture: the failing-step line is drawn in red where the DOM says it is
    w, h, ch, rows = _png_pixels(png)
    assert w == width and h >= height - 1
    x = round(fs["x"])
    red = 0
    for y in range(int(fs["top"]) + 2, min(h, int(fs["bottom"]) - 2)):
        row = rows[y]
        for xx in range(max(0, x - 2), min(w, x + 3)):
            r_, g_, b_ = row[xx * ch], row[xx * ch + 1], row[xx * ch + 2]
            if r_ > 170 and g_ < 90 and b_ < 90:
                red += 1
                break
    assert red >= 20, red  # a dashed line: most of its rows have red at its x


def test_a_long_run_scrolls_sideways_with_the_lane_names_in_place(tmp_path):
    _browser_or_skip()
    from headless_chromium import Chromium

    def many() -> None:
        def spin() -> None:
            for _ in range(200):
                greenrt.checkpoint()

        with greenrt.region() as r:
            r.spawn(spin)
            r.spawn(spin)

    res = lab.run(many, seed=1)
    out = tmp_path / "long.html"
    out.write_text(build(res.trace, fn=many).page, encoding="utf-8")
    with Chromium(tmp_path) as browser:
        page = browser.open(out.as_uri(), width=1000, height=500)
        scroll = page.evaluate("(() => { const s = document.querySelector('.scroll');"
                               " return [s.scrollWidth, s.clientWidth]; })()")
        names_x = page.evaluate("document.querySelector('.names').getBoundingClientRect().left")
        errors = page.errors()
    assert errors == []
    assert scroll[0] > scroll[1] >= 600  # wider than the window: it scrolls
    assert names_x < 40
