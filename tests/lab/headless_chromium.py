"""A small driver for headless Chromium over the DevTools protocol, for page tests.

Starts ``chromium --headless --remote-debugging-port=0`` with its own profile folder
(``--no-sandbox`` when running as root, where Chromium's sandbox refuses to start),
reads the port it chose from ``DevToolsActivePort``, and talks to the browser endpoint
with the ``websockets`` sync client: one page target attached in flat mode, console
messages, uncaught exceptions and log entries collected as they arrive. ::

    with Chromium(tmp_path) as browser:
        page = browser.open("file:///.../page.html", width=1400, height=800)
        page.evaluate("document.title")
        page.screenshot(tmp_path / "page.png")
        assert page.errors() == []
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in EXECUTABLES:
        path = shutil.which(name)
        if path:
            return path
    return None


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """A headless browser process and one DevTools connection to it."""

    def __init__(self, workdir: Path, executable: str | None = None, timeout: float = 60.0):
        self.exe = executable or find_chromium()
        if self.exe is None:
            raise FileNotFoundError("no chromium executable on PATH")
        self.workdir = Path(workdir)
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.ws = None
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        profile = self.workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        args = [self.exe, "--headless", "--remote-debugging-port=0",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-extensions", "--disable-background-networking",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        args.append("about:blank")
        self.log = open(self.workdir / "chromium.log", "wb")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while True:
            if port_file.exists():
                lines = port_file.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                    break
            if self.proc.poll() is not None:
                raise DevToolsError(f"chromium exited with {self.proc.returncode}: "
                                    + (self.workdir / "chromium.log").read_text()[-2000:])
            if time.monotonic() > deadline:
                raise DevToolsError("chromium did not open its DevTools port")
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        self._conn = connect(url, max_size=None, open_timeout=self.timeout)
        self.ws = self._conn.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.ws is not None:
                try:
                    self.call("Browser.close")
                except Exception:  # noqa: BLE001 - the process is ended below anyway
                    pass
                self._conn.__exit__(None, None, None)
        finally:
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self.log.close()

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its answer; events meanwhile are kept."""
        assert self.ws is not None
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DevToolsError(f"no answer to {method}")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None) -> dict:
        """The first event ``method`` (of ``session``), already received or next."""
        for i, ev in enumerate(self.events):
            if ev.get("method") == method and (session is None or ev.get("sessionId") == session):
                return self.events.pop(i)
        assert self.ws is not None
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DevToolsError(f"no {method} event")
            ev = json.loads(self.ws.recv(timeout=left))
            if ev.get("method") == method and (session is None or ev.get("sessionId") == session):
                return ev
            self.events.append(ev)

    def open(self, url: str, width: int = 1400, height: int = 800) -> Page:
        """A new page of ``width`` x ``height`` CSS pixels, loaded with ``url``."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        page = Page(self, session)
        page.navigate(url)
        return page


class Page:
    """One attached page target."""

    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def navigate(self, url: str) -> None:
        res = self.browser.call("Page.navigate", {"url": url}, session=self.session)
        if res.get("errorText"):
            raise DevToolsError(f"navigation to {url} failed: {res['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools evaluates it; the
        page itself needs no script)."""
        res = self.browser.call("Runtime.evaluate",
                                {"expression": expression, "returnByValue": True},
                                session=self.session)
        if "exceptionDetails" in res:
            raise DevToolsError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        """A PNG of the whole page (beyond the viewport's height), written to ``path``."""
        res = self.browser.call("Page.captureScreenshot",
                                {"format": "png", "captureBeyondViewport": True},
                                session=self.session)
        data = base64.b64decode(res["data"])
        Path(path).write_bytes(data)
        return data

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for ev in self.browser.events:
            if ev.get("sessionId") != self.session:
                continue
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description")
                                               or d.get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console." + p["type"] + ": " + " ".join(
                    str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
        return out
