"""Where the pytest plugin writes traces: under the project by default, configurable.

Each test runs pytest in a subprocess on a small project in ``tmp_path`` whose one lab
test deadlocks, so the plugin writes a trace and prints its path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

FAILING = '''
import pytest
import greenrt


@pytest.mark.lab(seed=1)
def test_deadlock():
    ev = greenrt.Event()
    ev.wait()
'''


def _pytest(cwd, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                       capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    out = p.stdout + p.stderr
    m = re.search(r"  trace: (\S+\.jsonl)", out)
    assert p.returncode == 1 and m, out
    return p, m.group(1)


def _project(root, sub: str = "tests") -> None:
    (root / "pytest.ini").write_text("[pytest]\n")
    d = root / sub
    d.mkdir(parents=True)
    (d / "test_prog.py").write_text(FAILING)


def test_default_is_the_rootdir_not_a_shared_tmp_folder(tmp_path):
    _project(tmp_path)
    _, path = _pytest(tmp_path, "tests/test_prog.py")
    expected = tmp_path / ".greenrt-lab" / "traces" / "tests_test_prog.py_test_deadlock-seed1.jsonl"
    assert path == str(expected)
    assert expected.is_file()
    # run from a subfolder: still the rootdir's folder, not one beside the cwd
    _, again = _pytest(tmp_path / "tests", "test_prog.py")
    assert again == str(expected)
    assert not (tmp_path / "tests" / ".greenrt-lab").exists()


def test_two_test_files_of_one_basename_do_not_share_a_trace(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "__init__.py").write_text("")
        (tmp_path / sub / "test_prog.py").write_text(FAILING)
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    paths = sorted(set(re.findall(r"  trace: (\S+\.jsonl)", p.stdout)))
    assert len(paths) == 2, p.stdout + p.stderr
    assert all(os.path.isfile(x) for x in paths)


def test_ini_option_is_relative_to_the_ini_file(tmp_path):
    _project(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\nlab_trace_dir = build/lab-traces\n")
    _, path = _pytest(tmp_path / "tests", "test_prog.py")
    assert os.path.dirname(path) == str(tmp_path / "build" / "lab-traces")
    assert os.path.isfile(path)
    assert not (tmp_path / ".greenrt-lab").exists()


def test_flag_overrides_the_ini_option_and_is_relative_to_the_cwd(tmp_path):
    _project(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\nlab_trace_dir = build/lab-traces\n")
    _, path = _pytest(tmp_path, "tests/test_prog.py", "--lab-trace-dir", "mine")
    assert os.path.dirname(path) == str(tmp_path / "mine")
    assert os.path.isfile(path)
    assert not (tmp_path / "build").exists()
