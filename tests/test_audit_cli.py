"""melanoma-audit's artefact audit, run as a separate process: the report per split and class, the one warning line
when an artefact predicts the class, its JSON, and silence when the artefact comes with both classes alike."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import has_entry_point

pytestmark = pytest.mark.skipif(not has_entry_point('melanoma-audit'), reason='melanoma-audit is not defined')


def _image(rng, ring: bool, n: int = 120) -> np.ndarray:
    "A skin-coloured image with a brown blob, and with the dermoscope's black ring outside the inscribed circle if `ring`."
    img = np.empty((n, n, 3), np.uint8); img[:] = (150, 170, 215)                     # BGR skin
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    c = rng.integers(-20, 20, 2)
    img[np.hypot(yy - c[0], xx - c[1]) < rng.integers(12, 30)] = (40, 70, 120)        # the lesion
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    if ring: img[np.hypot(yy, xx) >= 0.5 * n] = rng.integers(0, 20)
    return img


def _root(tmp_path: Path, rings: dict, n: int = 14) -> Path:
    "A data set root whose class `c` in split `s` has `rings[(s, c)]` of its `n` images with a ring."
    rng = np.random.default_rng(0)
    for (s, c), k in rings.items():
        (tmp_path/'ds'/s/c).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path/'ds'/s/c/f'{c}_{s}_{i}.jpg'), _image(rng, i < k), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return tmp_path/'ds'


def test_audit_warns_when_the_ring_predicts_the_class(tmp_path, run_script):
    root = _root(tmp_path, {('train', 'benign'): 0, ('train', 'malignant'): 12, ('test', 'benign'): 0, ('test', 'malignant'): 10})
    r = run_script('melanoma-audit', root, '--no-progress', '--json', tmp_path/'audit.json', timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'Artefact audit' in r.stdout and 'malignant 12/14 (85.7%)' in r.stdout, r.stdout
    warn = [l for l in r.stderr.splitlines() if l.startswith('melanoma-audit: warning: dark corners predict the class')]
    assert len(warn) == 1 and '(train, test)' in warn[0], r.stderr
    rep = json.loads((tmp_path/'audit.json').read_text())['artefacts']
    tr = rep['artefacts']['dark corners']['train']
    assert tr['warn'] and tr['classes']['malignant']['count'] == 12 and tr['classes']['benign']['count'] == 0
    assert rep['limits']['ratio'] > 1 and len(rep['warnings']) == 1


def test_audit_is_silent_when_both_classes_have_the_ring(tmp_path, run_script):
    root = _root(tmp_path, {('train', 'benign'): 7, ('train', 'malignant'): 7, ('test', 'benign'): 5, ('test', 'malignant'): 5})
    r = run_script('melanoma-audit', root, '--no-progress', timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'benign 7/14 (50.0%)  malignant 7/14 (50.0%)' in r.stdout, r.stdout
    assert 'warning' not in r.stderr, r.stderr
