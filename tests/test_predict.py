"""melanoma-predict (issue 25: G, L): every input accounted for, the TTA threshold, a closed stdout."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

from conftest import script_cmd
from _tiny_run import tiny_run

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='POSIX links and file descriptors')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp('predict')
    return tiny_run(d, target_sensitivity=0.9), d


def _lines(r): return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def test_linked_hidden_and_jfif(run, run_script, tmp_path):
    model, d = run
    imgs = sorted((d/'data'/'test'/'benign').glob('*.jpg'))
    top, elsewhere = tmp_path/'photos', tmp_path/'elsewhere'
    for p in (top, elsewhere, top/'.hidden'): p.mkdir(parents=True)
    shutil.copy(imgs[0], top/'a.jpe'); shutil.copy(imgs[1], top/'b.jfif'); shutil.copy(imgs[2], elsewhere/'c.jpg')
    shutil.copy(imgs[3], top/'.hidden'/'d.jpg')
    (top/'linked').symlink_to(elsewhere, target_is_directory=True)
    (elsewhere/'loop').symlink_to(top, target_is_directory=True)            # a loop: searched once, no hang
    r = run_script('melanoma-predict', '--model', model, top, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(Path(x['path']).name for x in _lines(r)) == ['a.jpe', 'b.jfif', 'c.jpg']
    assert '.hidden' in r.stderr and 'not searched' in r.stderr


def test_tta_does_not_use_the_single_view_threshold(run, run_script):
    model, d = run
    img = sorted((d/'data'/'test'/'malignant').glob('*.jpg'))[0]
    r = run_script('melanoma-predict', '--model', model, img, '--tta', timeout=300)
    assert r.returncode == 2 and 'single views' in r.stderr and '--threshold' in r.stderr, r.stderr[-2000:]
    r = run_script('melanoma-predict', '--model', model, img, '--tta', '--threshold', '0.4', timeout=300)
    assert r.returncode == 0 and len(_lines(r)) == 1


def test_closed_stdout_is_an_error(run, cli_env):
    model, d = run
    img = sorted((d/'data'/'test'/'malignant').glob('*.jpg'))[0]
    cmd = ' '.join(map(str, script_cmd('melanoma-predict') + ['--model', model, img]))
    if len(script_cmd('melanoma-predict')) > 1: pytest.skip('needs the installed console script')
    r = subprocess.run(['bash', '-c', f'{cmd} >&-'], capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 2 and 'standard output is closed' in r.stderr, (r.returncode, r.stderr[-2000:])
