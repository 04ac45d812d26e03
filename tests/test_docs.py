"""The documentation builds without a warning (``make docs``): the Markdown guides and
the API reference generated from the docstrings. A docstring that is not valid
reStructuredText, a broken toctree or a page left out of it fails here."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_sphinx_build_has_no_warnings(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    api = (tmp_path / "html" / "api" / "runtime.html").read_text()
    for name in ("greenrt.run", "greenrt.lowlevel.WaitQueue", "greenrt.net.open_tcp"):
        assert name in api, name
    protocols = (tmp_path / "html" / "api" / "protocols.html").read_text()
    assert "greenrt.protocols.base.pool.Pool" in protocols
    assert "greenrt.protocols.http.server.HTTPServer" in protocols
