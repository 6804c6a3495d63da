"""The console scripts answer `--help`, a bad flag and the mistakes found before any work at once, without PyTorch."""
import subprocess, sys, time

import pytest

from conftest import SCRIPTS, script_cmd

# Every command's --help, a flag it does not know, a flag out of range, and the user errors found before the library
# is needed: none of them may import PyTorch (importing it alone takes several seconds).
FAST = {'melanoma-prepare': [['--help'], ['--no-such-flag'], ['--size', '8'], ['']],
        'melanoma-train': [['--help'], ['--no-such-flag'], ['--seed', '-1'], ['--data', '/nonexistent/data'],
                           ['--resume', '--overwrite'], ['--weights', '/nonexistent/w.pth', '--arch', 'resnet18'],
                           ['--epochs', '3', '--budget', '5'], ['--budget', '1e308'], ['--precision', 'fp16']],
        'melanoma-evaluate': [['--help'], ['--no-such-flag'], ['--model', 'm.pt', '--threshold', 'nan'],
                              ['--model', 'm.pt', '--n-boot', '0']],
        'melanoma-predict': [['--help'], ['--no-such-flag'], ['--model', 'm.pt', '--batch-size', '0', 'x.jpg'],
                             ['--model', 'm.pt', '/nonexistent/x.jpg']],
        'melanoma-audit': [['--help'], ['--no-such-flag'], ['--radius', '-1']]}

PROBE = """
import contextlib, io, json, sys
import melanoma_nb.cli as cli
status = {}
for main, argvs in json.loads(sys.argv[1]).items():
    for argv in argvs:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try: s = getattr(cli, main)(argv)
            except SystemExit as e: s = e.code
        status[f"{main} {' '.join(argv)}"] = s
print(json.dumps({'status': status, 'heavy': sorted(m for m in ('torch', 'torchvision', 'sklearn') if m in sys.modules)}))
"""


def test_no_pytorch_for_help_and_argument_errors(cli_env):
    import json
    cases = {SCRIPTS[k]: v for k, v in FAST.items()}
    r = subprocess.run([sys.executable, '-c', PROBE, json.dumps(cases)], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    assert got['heavy'] == [], f"imported {got['heavy']} for --help or an argument error"
    for case, status in got['status'].items():
        assert status == (0 if case.endswith('--help') else 2), (case, status)


@pytest.mark.parametrize('name', sorted(FAST))
def test_help_and_a_bad_flag_are_quick(name, run_script):
    "Wall time as a user sees it (a fresh process, the installed script); generous for a loaded CI machine."
    for argv, status in ((['--help'], 0), (['--no-such-flag'], 2)):
        t = time.perf_counter()
        r = run_script(name, *argv, timeout=60)
        wall = time.perf_counter() - t
        assert r.returncode == status, r.stderr
        assert wall < 2.0, f"{name} {' '.join(argv)} took {wall:.1f} s"


def _console_scripts() -> dict:
    "pyproject.toml's [project.scripts]: name -> 'module:function'."
    import tomllib
    from pathlib import Path
    return tomllib.loads((Path(__file__).resolve().parent.parent/'pyproject.toml').read_text())['project']['scripts']

HELP_PROBE = """
import contextlib, importlib, io, json, sys, time
module, func = sys.argv[1].split(':')
t = time.perf_counter()
main = getattr(importlib.import_module(module), func)
with contextlib.redirect_stdout(io.StringIO()) as out:
    try: status = main(['--help'])
    except SystemExit as e: status = e.code
print(json.dumps({'status': status, 'help': out.getvalue(), 'seconds': time.perf_counter() - t,
                  'heavy': sorted(m for m in ('torch', 'torchvision', 'sklearn', 'gradio') if m in sys.modules)}))
"""


def test_every_console_script_helps_without_pytorch(cli_env):
    "Every console script of pyproject.toml (melanoma-app too) answers --help with its exit statuses, importing no PyTorch."
    import json
    scripts = _console_scripts()
    assert {'melanoma-prepare', 'melanoma-train', 'melanoma-evaluate', 'melanoma-predict', 'melanoma-audit',
            'melanoma-app'} <= set(scripts)
    for name, target in sorted(scripts.items()):
        r = subprocess.run([sys.executable, '-c', HELP_PROBE, target], capture_output=True, text=True, env=cli_env, timeout=120)
        assert r.returncode == 0, (name, r.stderr)
        got = json.loads(r.stdout.splitlines()[-1])
        print(f"{name} --help: {got['seconds']:.2f} s in a fresh process (import and parser)")
        assert got['status'] == 0 and 'exit status:' in got['help'], (name, got['status'])
        assert got['heavy'] == [], f"{name} --help imported {got['heavy']}"
