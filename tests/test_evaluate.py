"""melanoma-evaluate against careless inputs (issue 25: E, F, H, L); each test failed on the code before the fix."""
import json, os, shutil, sys
from pathlib import Path

import pytest

from conftest import assert_user_error
from _tiny_run import edit_meta, tiny_run

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='POSIX file names')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp('evaluate')
    return tiny_run(d, target_sensitivity=0.9), d


def _eval(run_script, model, data, *args):
    return run_script('melanoma-evaluate', '--model', model, '--data', data, '--n-boot', 20, '--no-progress', *args, timeout=300)


def test_non_utf8_file_name_in_predictions_csv(run, run_script, tmp_path):
    model, d = run
    data = tmp_path/'data'; shutil.copytree(d/'data', data)
    src = sorted((data/'test'/'benign').glob('*.jpg'))[0]
    os.rename(src, os.fsencode(src.parent) + b'/caf\xe9 \xff.jpg')
    r = _eval(run_script, model, data, '--out', tmp_path/'ev')
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    rows = (tmp_path/'ev'/'predictions.csv').read_bytes().splitlines()
    assert len(rows) == 1 + 40 and any(b'caf\xe9 \xff.jpg' in row for row in rows)   # the name's own bytes


def test_out_into_the_training_run_refused(run, run_script):
    model, d = run
    before = (model.parent/'metrics.json').read_bytes()
    r = _eval(run_script, model, d/'data', '--out', model.parent)
    assert_user_error(r, 'melanoma-evaluate', 'holds a training run')
    assert (model.parent/'metrics.json').read_bytes() == before


@pytest.mark.parametrize('recipe', [[], None, 'x', {'target_sensitivity': 'high'}, {'arch': 'cnn', 'nonsense': 1}])
def test_edited_recipe_one_line(run, run_script, tmp_path, recipe):
    model, d = run
    bad = edit_meta(model, tmp_path/'model.pt', recipe=recipe)
    r = _eval(run_script, bad, d/'data', '--out', tmp_path/'ev')
    assert_user_error(r, 'melanoma-evaluate', 'recipe')
    r = _eval(run_script, bad, d/'data', '--out', tmp_path/'ev', '--threshold', '0.5')   # a threshold given: fine
    assert r.returncode == 0, r.stderr[-2000:]


def test_tta_threshold_needs_the_training_data(run, run_script, tmp_path):
    "threshold_for rebuilds the validation split only from the data the checkpoint was trained on (its fingerprint)."
    model, d = run
    other = tmp_path/'other'; shutil.copytree(d/'data', other)
    victim = sorted((other/'train'/'benign').glob('*.jpg'))[0]
    shutil.copy(sorted((other/'train'/'malignant').glob('*.jpg'))[0], victim)      # one training image changed
    r = _eval(run_script, model, other, '--tta', '--out', tmp_path/'ev')
    assert_user_error(r, 'melanoma-evaluate', 'not the data the model was trained on')
    r = _eval(run_script, model, d/'data', '--tta', '--out', tmp_path/'ev2')
    assert r.returncode == 0, r.stderr[-2000:]


# --- issues 32, 34, 35 (inference side) ---------------------------------------------------------------------------------

def test_bare_carriage_return_in_a_file_name(run, run_script, tmp_path):
    "A bare \\r in a name is quoted: predictions.csv still reads as 1 + 40 rows, the name whole."
    import csv
    model, d = run
    data = tmp_path/'data'; shutil.copytree(d/'data', data)
    src = sorted((data/'test'/'benign').glob('*.jpg'))[0]
    os.rename(src, src.parent/'odd\rname.jpg')
    r = _eval(run_script, model, data, '--out', tmp_path/'ev')
    assert r.returncode == 0, r.stderr[-2000:]
    with open(tmp_path/'ev'/'predictions.csv', newline='', encoding='utf-8') as f: rows = list(csv.reader(f))
    assert len(rows) == 41 and any(row[0].endswith('odd\rname.jpg') for row in rows), rows[:3]


def test_dedup_when_every_test_image_is_a_copy(run, run_script, tmp_path):
    model, d = run
    data = tmp_path/'data'; shutil.copytree(d/'data'/'train', data/'train')
    for c in ('benign', 'malignant'):
        (data/'test'/c).mkdir(parents=True)
        for f in sorted((data/'train'/c).glob('*.jpg'))[:3]: shutil.copy(f, data/'test'/c/f'copy_{f.name}')
    r = _eval(run_script, model, data, '--dedup', '--out', tmp_path/'ev')
    assert_user_error(r, 'melanoma-evaluate', 'copies a training image')


def test_headline_plain_words_and_a_short_training_warned(run, run_script, tmp_path):
    "The table and metrics.json lead with the images without dark corners; ring lines say malignant/benign."
    model, d = run
    r = _eval(run_script, model, d/'data', '--out', tmp_path/'ev')
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert next(iter(m)) == 'without_dark_corners' and m['without_dark_corners']['n'] == m['rings']['subgroups']['no dark corners']['n']
    assert set(m['without_dark_corners']['ci']) >= {'accuracy', 'sensitivity', 'specificity', 'roc_auc'}
    head = [l for l in r.stdout.splitlines() if l.startswith('metric')][0]
    assert 0 < head.index('test: no dark corners (') < head.index('test: all 40'), r.stdout[:2000]
    ring = r.stdout.split('synthetic rings:')[1]
    assert 'positive' not in ring and 'negative' not in ring and 'benign ring r=0.80' in ring and 'called malignant' in ring, ring
    assert 'melanoma-evaluate: warning: ' in r.stderr and 'far short' in r.stderr, r.stderr[-2000:]


def test_out_held_by_another_evaluate_refused(run, run_script, tmp_path):
    "Issue 34: an --out folder whose lock another melanoma-evaluate holds: refused in one line, its files untouched."
    import fcntl
    model, d = run
    old = '{"without_dark_corners": null, "rings": {}, "old": 1}'                # an earlier evaluation's files
    out = tmp_path/'ev'; out.mkdir(); (out/'metrics.json').write_text(old); (out/'predictions.csv').write_text('old')
    fd = os.open(out/'.evaluate.lock', os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX)   # a live evaluate holds it
    try: r = _eval(run_script, model, d/'data', '--out', out)
    finally: os.close(fd)
    assert_user_error(r, 'melanoma-evaluate', f'another melanoma-evaluate is writing to {out} now; nothing was changed',
                      '--out DIR')
    assert sorted(p.name for p in out.iterdir()) == ['.evaluate.lock', 'metrics.json', 'predictions.csv']
    assert (out/'metrics.json').read_text() == old and (out/'predictions.csv').read_text() == 'old'
    r = _eval(run_script, model, d/'data', '--out', out)                  # once it is free: runs, and leaves no lock file
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (out/'.evaluate.lock').exists() and (out/'metrics.json').read_text() != old
