"""Shared helpers for the tests/ suite: run a console script in a fresh process, a tiny cache of the bundled sample."""
import os, shutil, subprocess, sys
from pathlib import Path

import pytest

from melanoma_nb.data import prepare, sample_root

def pytest_addoption(parser):
    parser.addoption('--slow', action='store_true',
                     help="also run the slow end-to-end cases (DDP, the browser, signals); .ci/run does")


def pytest_configure(config):
    config.addinivalue_line('markers', "slow: an end-to-end case that takes minutes (DDP, the browser, signals)")


def pytest_collection_modifyitems(config, items):
    "Slow cases are skipped, with the reason (-rs lists it), unless --slow is given."
    if config.getoption('--slow'): return
    skip = pytest.mark.skip(reason="slow end-to-end case (DDP, browser or signals): .ci/run runs it; here: pytest --slow")
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)


# console script -> the function in melanoma_nb.cli it runs (pyproject.toml [project.scripts])
SCRIPTS = {'melanoma-prepare': 'prepare_main', 'melanoma-train': 'train_main', 'melanoma-evaluate': 'evaluate_main',
           'melanoma-predict': 'predict_main', 'melanoma-audit': 'audit_main'}


def has_entry_point(name: str) -> bool:
    "Whether melanoma_nb.cli defines the function behind console script `name`."
    import melanoma_nb.cli
    return hasattr(melanoma_nb.cli, SCRIPTS[name])


def script_cmd(name: str) -> list:
    "The command that runs console script `name`: the installed script next to this Python, else `python -c`."
    exe = Path(sys.executable).parent/name
    if exe.is_file() and os.access(exe, os.X_OK): return [str(exe)]
    return [sys.executable, '-c', f"import sys; from melanoma_nb.cli import {SCRIPTS[name]} as m; sys.exit(m())"]


@pytest.fixture(scope='session')
def cli_env(tmp_path_factory):
    "Environment for child processes: caches in a temporary folder, no display, no MELANOMA_DATA from outside."
    env = {**os.environ, 'MELANOMA_CACHE': str(tmp_path_factory.mktemp('melanoma_cache')), 'MPLBACKEND': 'Agg',
           'PYTHONUNBUFFERED': '1'}
    env.pop('MELANOMA_DATA', None); env.pop('MELANOMA_MAX_PIXELS', None)
    return env


@pytest.fixture(scope='session')
def run_script(cli_env):
    "run_script('melanoma-train', *args) -> CompletedProcess (text); never raises on a non-zero exit status."
    def run(name, *args, timeout=300, env=None, cwd=None):
        return subprocess.run(script_cmd(name) + [str(a) for a in args], capture_output=True, text=True,
                              timeout=timeout, env=env or cli_env, cwd=cwd)
    return run


@pytest.fixture(scope='session')
def sample():
    return sample_root()


@pytest.fixture(scope='session')
def cache32(tmp_path_factory):
    "The bundled sample decoded at 32 px, 3 channels (shared by the in-process training tests)."
    return prepare(sample_root(), size=32, channels=3, cache_dir=tmp_path_factory.mktemp('cache32'), progress=False,
                   verbose=False)


@pytest.fixture(scope='session')
def model_file(tmp_path_factory, cache32):
    """A real checkpoint, trained once per session: 1 epoch of the custom CNN at 32 px, 3 channels, on the bundled sample.
    Tests only read it (each writes its outputs in its own tmp_path)."""
    from melanoma_nb.training import Recipe, fit
    out = tmp_path_factory.mktemp('trained')/'run'
    fit(Recipe(arch='cnn', size=32, channels=3, epochs=1, seed=0), cache32, out_dir=out, progress=False, verbose=False)
    return out/'model.pt'


def assert_user_error(r, prog: str, *needles, status: int = 2):
    "A finished process `r` failed the way a user error should: `status`, one line on stderr, no traceback."
    err = r.stderr.strip()
    assert r.returncode == status, f"exit status {r.returncode}, expected {status}\nstdout: {r.stdout[-2000:]}\nstderr: {err[-3000:]}"
    assert 'Traceback' not in r.stderr, err[-3000:]
    lines = [l for l in err.splitlines() if l.startswith(f'{prog}: error:')]
    assert len(lines) == 1, f"expected one '{prog}: error:' line, got:\n{err[-3000:]}"
    for n in needles: assert n in lines[0], f"{n!r} not in the error line: {lines[0]}"
    return lines[0]
