"""The README's test command (tools/test.sh) and .ci/run: pytest runs even when a notebook fails, the exit status is
non-zero when either failed, each notebook's time is printed, and .ci/run runs exactly the README's command."""
import os, re, subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_test_sh(tmp_path, nb_status: int, test_body: str):
    "tools/test.sh with a stand-in nbdev-test (one notebook, `nb_status`) and one pytest file holding `test_body`."
    stub = tmp_path/'bin'; stub.mkdir()
    (stub/'nbdev-test').write_text('#!/usr/bin/env bash\necho "Starting /x/nbs/00_a.ipynb"; sleep 1\n'
                                   f'echo "- Completed /x/nbs/00_a.ipynb"; exit {nb_status}\n')
    (stub/'nbdev-test').chmod(0o755)
    (tmp_path/'test_one.py').write_text(f'def test_one():\n    {test_body}\n')
    env = {**os.environ, 'PATH': f"{stub}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(ROOT/'tools'/'test.sh'), '-q', '-p', 'no:cacheprovider', str(tmp_path/'test_one.py')],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize('nb_status, body, status', [(1, 'pass', 1), (0, 'assert False', 1), (0, 'pass', 0)])
def test_pytest_runs_after_a_failed_notebook(tmp_path, nb_status, body, status):
    r = _run_test_sh(tmp_path, nb_status, body)
    assert r.returncode == status, r.stdout + r.stderr
    assert re.search(r'1 (passed|failed)', r.stdout), r.stdout          # pytest ran, whatever the notebooks did
    assert re.search(r'- Completed /x/nbs/00_a\.ipynb \(\d+ s\)', r.stdout), r.stdout   # each notebook's time


def test_ci_runs_the_readme_test_command():
    readme = (ROOT/'README.md').read_text()
    cmd = next(l.strip() for l in readme.splitlines() if 'tools/test.sh' in l and l.strip().startswith('pip install'))
    ci = [l.strip() for l in (ROOT/'.ci'/'run').read_text().splitlines()]
    assert cmd in ci, (cmd, [l for l in ci if 'test' in l])


def test_ci_removes_its_temporary_folders():
    ci = (ROOT/'.ci'/'run').read_text()
    assert re.search(r"""trap 'rm -rf "\$hosted"' EXIT""", ci) and '--work "$hosted"' in ci and 'melanoma-hosted-' in ci, ci
