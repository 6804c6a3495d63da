"""Which class is positive, end to end through the console scripts: folders named Benign/Malignant, benign/Malignant
and melanoma/nevus train, evaluate and predict with the malignant-like class as the positive one; three classes and
names that say nothing are refused with one line that says what to do, unless --positive names the class."""
import json, shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_user_error

CASES = {  # folder names (benign-like, malignant-like) -> the class that must be positive
    'Benign-Malignant': (('Benign', 'Malignant'), 'Malignant'),
    'benign-Malignant': (('benign', 'Malignant'), 'Malignant'),
    'nevus-melanoma': (('nevus', 'melanoma'), 'melanoma'),     # sorted: ['melanoma', 'nevus']: the positive is first
}
TRAIN = ['--size', '32', '--epochs', '2', '--arch', 'cnn', '--device', 'cpu', '--no-progress']


def _renamed(sample: Path, dest: Path, names, extra=None) -> Path:
    "A copy of the sample with its class folders renamed (benign -> names[0], malignant -> names[1]); `extra` adds a class."
    for split in ('train', 'test'):
        for src, dst in zip(('benign', 'malignant'), names):
            shutil.copytree(sample/split/src, dest/split/dst)
        if extra: shutil.copytree(sample/split/'benign', dest/split/extra)
    return dest


@pytest.mark.parametrize('case', list(CASES))
def test_positive_class_end_to_end(case, tmp_path, sample, run_script):
    names, positive = CASES[case]
    root = _renamed(sample, tmp_path/'data', names)
    run, ev = tmp_path/'run', tmp_path/'eval'
    r = run_script('melanoma-train', '--data', root, '--out', run, '--cache', tmp_path/'cache', *TRAIN)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = torch.load(run/'model.pt', weights_only=True)['meta']
    assert meta['positive'] == positive and json.loads((run/'metrics.json').read_text())['positive'] == positive

    r = run_script('melanoma-evaluate', '--model', run/'model.pt', '--data', root, '--out', ev, '--cache', tmp_path/'cache',
                   '--n-boot', '50', '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((ev/'metrics.json').read_text())
    n_pos = len(list((root/'test'/names[1]).iterdir()))
    (tn, fp), (fn, tp) = m['confusion']
    assert tp + fn == n_pos and tn + fp == len(list((root/'test'/names[0]).iterdir())), m['confusion']

    # predict: p is the positive class's probability, and the label is one of the two class names
    img = sorted((root/'test'/names[1]).iterdir())[0]
    r = run_script('melanoma-predict', '--model', run/'model.pt', img)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[0])
    assert out['call'] in names, out
    from melanoma_nb.checkpoint import load_checkpoint
    from melanoma_nb.data import read_image
    from melanoma_nb.evaluation import predict_proba
    model, meta = load_checkpoint(run/'model.pt')
    x = read_image(img, meta['size'], meta['in_chans'])[None]
    p = predict_proba(model, x, meta['mean'], meta['std'], positive=meta['classes'].index(positive),
                      temperature=meta['temperature'])[0]
    assert abs(out['p_malignant'] - float(p)) < 1e-4, (out, p)
    assert out['call'] == (positive if p >= meta['threshold'] else names[0])


def test_three_classes_refused_unless_positive_named(tmp_path, sample, run_script):
    root = _renamed(sample, tmp_path/'data', ('benign', 'malignant'), extra='other')
    r = run_script('melanoma-train', '--data', root, '--out', tmp_path/'run', '--cache', tmp_path/'cache', *TRAIN)
    assert_user_error(r, 'melanoma-train', 'found 3 class folders', '--positive NAME')
    assert not (tmp_path/'run'/'model.pt').exists()
    r = run_script('melanoma-train', '--data', root, '--out', tmp_path/'run2', '--cache', tmp_path/'cache', *TRAIN,
                   '--positive', 'malignant')
    assert r.returncode == 0, r.stderr[-3000:]
    meta = torch.load(tmp_path/'run2'/'model.pt', weights_only=True)['meta']
    assert meta['positive'] == 'malignant' and len(meta['classes']) == 3
    img = sorted((root/'test'/'other').iterdir())[0]
    r = run_script('melanoma-predict', '--model', tmp_path/'run2'/'model.pt', img)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.splitlines()[0])['call'] in ('malignant', 'not malignant')   # never a silent 'benign'


def test_names_that_say_nothing_are_refused(tmp_path, sample, run_script):
    root = _renamed(sample, tmp_path/'data', ('cats', 'dogs'))
    r = run_script('melanoma-train', '--data', root, '--out', tmp_path/'run', '--cache', tmp_path/'cache', *TRAIN)
    assert_user_error(r, 'melanoma-train', 'cannot tell which of the classes', '--positive NAME')
    r = run_script('melanoma-train', '--data', root, '--out', tmp_path/'run', '--cache', tmp_path/'cache', *TRAIN,
                   '--positive', 'nope')
    assert_user_error(r, 'melanoma-train', "'nope' is not one of the classes")
