"""End-to-end checks of melanoma-evaluate, melanoma-predict and melanoma-audit, run as separate processes."""
import json, shutil, subprocess, sys
from pathlib import Path

import pytest

from melanoma_nb.data import prepare, sample_root

METRIC_KEYS = {'n', 'rings', 'accuracy', 'sensitivity', 'specificity', 'precision', 'f1', 'roc_auc', 'pr_auc', 'threshold',
               'confusion', 'ci', 'without_dark_corners'}   # the lead: the test images without dark corners


def run_cli(main, *args, cwd=None):
    "Run `melanoma_nb.cli.<main>` in a fresh interpreter with `args`; -> CompletedProcess (text)."
    code = f"import sys; from melanoma_nb.cli import {main}; sys.exit({main}())"
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**__import__('os').environ, 'MPLBACKEND': 'Agg'})


def test_evaluate_writes_the_keys(model_file, tmp_path):
    out = tmp_path/'eval'
    r = run_cli('evaluate_main', '--model', model_file, '--data', sample_root(), '--out', out, '--dedup', '--no-progress',
                '--cache', tmp_path/'cache', '--n-boot', 200)
    assert r.returncode == 0, r.stderr
    m = json.loads((out/'metrics.json').read_text())
    assert set(m) == METRIC_KEYS | {'dedup'}
    assert m['n'] == 40 and sum(map(sum, m['confusion'])) == 40
    assert set(m['ci']) == {'accuracy', 'sensitivity', 'specificity', 'roc_auc'}
    for k, (lo, hi) in m['ci'].items(): assert lo <= m[k] <= hi
    assert m['dedup']['removed'] == 0 and m['dedup']['n'] == 40
    for f in ('confusion.png', 'curves.png', 'predictions.png', 'errors.png'): assert (out/f).stat().st_size > 1000
    assert 'accuracy' in r.stdout and 'sensitivity' in r.stdout


def test_evaluate_one_split_folder(model_file, tmp_path):
    out = tmp_path/'eval'
    r = run_cli('evaluate_main', '--model', model_file, '--data', sample_root()/'test', '--out', out, '--no-progress',
                '--cache', tmp_path/'cache', '--n-boot', 100)
    assert r.returncode == 0, r.stderr
    m = json.loads((out/'metrics.json').read_text())
    assert set(m) == METRIC_KEYS and m['n'] == 40


def test_evaluate_user_errors(model_file, tmp_path):
    r = run_cli('evaluate_main', '--model', tmp_path/'missing.pt', '--data', sample_root(), '--out', tmp_path/'o')
    assert r.returncode == 2 and 'Traceback' not in r.stderr and 'missing.pt' in r.stderr
    r = run_cli('evaluate_main', '--model', model_file, '--data', sample_root()/'test', '--dedup', '--out', tmp_path/'o')
    assert r.returncode == 2 and 'Traceback' not in r.stderr and '--dedup' in r.stderr


def test_predict_folder_with_a_bad_file(model_file, tmp_path):
    d = tmp_path/'imgs'
    (d/'sub').mkdir(parents=True)
    good = sorted((sample_root()/'test'/'malignant').glob('*.jpg'))[:2] + sorted((sample_root()/'test'/'benign').glob('*.jpg'))[:1]
    for i, f in enumerate(good): shutil.copy(f, (d/'sub' if i else d)/f.name)
    (d/'broken.jpg').write_bytes(b'this is not a jpeg')
    r = run_cli('predict_main', '--model', model_file, d)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert sorted(Path(l['path']).name for l in lines) == sorted(f.name for f in good)
    for l in lines:
        assert set(l) == {'path', 'p_malignant', 'call'} and 0 <= l['p_malignant'] <= 1
        assert l['call'] in ('benign', 'malignant')
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(err) == 1 and 'broken.jpg' in err[0]
    # nothing readable: a user error
    r = run_cli('predict_main', '--model', model_file, d/'broken.jpg')
    assert r.returncode == 2 and 'broken.jpg' in r.stderr


def test_predict_gradcam(model_file, tmp_path):
    pytest.importorskip('melanoma_nb.gradcam')
    f = sorted((sample_root()/'test'/'malignant').glob('*.jpg'))[0]
    r = run_cli('predict_main', '--model', model_file, f, '--gradcam', tmp_path/'cams')
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.splitlines()[0])
    assert Path(rec['gradcam']).is_file() and Path(rec['gradcam']).parent == tmp_path/'cams'


def test_audit_finds_planted_copy(tmp_path):
    root = tmp_path/'ds'
    shutil.copytree(sample_root()/'train', root/'train')
    (root/'test'/'benign').mkdir(parents=True); (root/'test'/'malignant').mkdir(parents=True)
    src = sorted((root/'train'/'benign').glob('*.jpg'))[5]
    shutil.copy(src, root/'test'/'benign'/'copy.jpg')
    for f in sorted((sample_root()/'test'/'malignant').glob('*.jpg'))[:3]: shutil.copy(f, root/'test'/'malignant'/f.name)
    r = run_cli('audit_main', root, '--no-progress')
    assert r.returncode == 0, r.stderr
    pairs = [l for l in r.stdout.splitlines() if l.startswith(('exact', 'near'))]
    assert len(pairs) == 1 and 'copy.jpg' in pairs[0] and src.name in pairs[0]
