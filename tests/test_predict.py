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


# --- issue 33 (one answer everywhere) and issue 34 (threshold_tta, overlays) -------------------------------------------

def _call(main, argv, capsys):
    "Run a console script's main in this process: (status, stdout, stderr)."
    from melanoma_nb import cli
    status = getattr(cli, main)([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _three_class_model(d: Path, images) -> Path:
    "A 3-class checkpoint (random weights) whose thresholds put `images` on both sides, single view and TTA."
    import torch
    from melanoma_nb.checkpoint import save_checkpoint
    from melanoma_nb.cnn import create_model
    from melanoma_nb.evaluation import Predictor
    from melanoma_nb.settings import Recipe
    torch.manual_seed(3)
    net = create_model('cnn', in_chans=3, num_classes=3).eval()
    meta = dict(arch='cnn', in_chans=3, size=32, mean=[0.5] * 3, std=[0.25] * 3, classes=['benign', 'malignant', 'nevus'],
                positive='malignant', threshold=0.5, recipe=Recipe(arch='cnn', size=32).to_dict(), metrics={}, epoch=1)
    pr = Predictor(net, meta)
    meta['threshold'] = float(pr.proba(images).mean())
    meta['threshold_tta'] = float(pr.proba(images, tta=True).mean())
    return save_checkpoint(d/'three.pt', net, meta)


def test_three_classes_one_answer(run, tmp_path, capsys):
    "melanoma-predict prints the p, decision and map class that the Predictor gives, with and without TTA."
    import numpy as np
    from melanoma_nb.data import read_image
    from melanoma_nb.evaluation import Predictor
    _, d = run
    files = sorted((d/'data'/'test'/'malignant').glob('*.jpg'))[:6] + sorted((d/'data'/'test'/'benign').glob('*.jpg'))[:6]
    x = np.stack([read_image(f, 32, 3) for f in files])
    ck = _three_class_model(tmp_path, x)
    pr = Predictor.from_file(ck)
    for tta in (False, True):
        status, out, err = _call('predict_main', ['--model', ck, *files, '--gradcam', tmp_path/f'cams{tta}']
                                 + (['--tta'] if tta else []), capsys)
        assert status == 0, err
        recs = [json.loads(l) for l in out.splitlines()]
        t = pr.threshold(tta)
        p, m = pr.proba(x, tta=tta), pr.maps(x, tta=tta, threshold=t)
        assert (p >= t).any() and (p < t).any()                               # both sides of the threshold
        assert [r['p_malignant'] for r in recs] == [round(float(v), 6) for v in p]
        assert [r['call'] for r in recs] == pr.decide(p, t)
        assert [r['gradcam_class'] for r in recs] == [pr.classes[i] for i in m.target]
        assert set(r['call'] for r in recs) == {'malignant', 'not malignant'}
        assert {r['gradcam_class'] for r in recs if r['call'] == 'not malignant'} <= {'benign', 'nevus'}


def test_gradcam_runs_the_model_once(run, tmp_path, capsys, monkeypatch):
    from melanoma_nb.evaluation import Predictor
    model, d = run
    calls, orig = [], Predictor.from_file
    def spy(path, device=None):
        pr = orig(path, device); pr.model.register_forward_hook(lambda *a: calls.append(1)); return pr
    monkeypatch.setattr(Predictor, 'from_file', staticmethod(spy))
    files = sorted((d/'data'/'test'/'benign').glob('*.jpg'))[:3]
    status, out, err = _call('predict_main', ['--model', model, *files, '--gradcam', tmp_path/'cams'], capsys)
    assert status == 0, err
    assert len(calls) == 1, calls                 # one batch: one forward pass gives p, the decision and the map


@pytest.mark.parametrize('bad', [float('nan'), 2.0, -1, True, 'abc', [0.5], {'t': 0.5}])
def test_threshold_tta_is_checked(run, tmp_path, capsys, bad):
    from _tiny_run import edit_meta
    model, d = run
    ck = edit_meta(model, tmp_path/'edited.pt', threshold_tta=bad)
    img = sorted((d/'data'/'test'/'malignant').glob('*.jpg'))[0]
    status, out, err = _call('predict_main', ['--model', ck, img, '--tta'], capsys)
    assert status == 2 and out == '' and err.count('\n') == 1 and 'Traceback' not in err, err
    assert err.startswith(f'melanoma-predict: error: {ck}: ') and 'threshold_tta' in err, err


def test_long_overlay_name_is_shortened(run, tmp_path, capsys):
    model, d = run
    src = sorted((d/'data'/'test'/'benign').glob('*.jpg'))
    long = tmp_path/('a' * 250 + '.jpg'); shutil.copy(src[0], long)        # <stem>_gradcam.png would be 258 bytes
    status, out, err = _call('predict_main', ['--model', model, long, src[1], '--gradcam', tmp_path/'cams'], capsys)
    assert status == 0, err
    recs = [json.loads(l) for l in out.splitlines()]
    assert len(recs) == 2 and all(r['gradcam'] and Path(r['gradcam']).stat().st_size > 100 for r in recs), recs
    assert all(len(Path(r['gradcam']).name.encode()) <= 255 for r in recs)


def test_overlay_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import numpy as np
    from melanoma_nb import gradcam
    from melanoma_nb.checkpoint import OutputError
    def broken(f, *a, **k): f.write(b'\x89PNG half'); raise OSError(28, 'No space left on device')
    monkeypatch.setattr(gradcam.plt, 'imsave', broken)
    with pytest.raises(OutputError): gradcam.save_overlay(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32)), tmp_path/'o.png')
    assert list(tmp_path.iterdir()) == []                                     # no truncated PNG, no temporary file


def test_read_only_gradcam_folder_one_line(run, tmp_path, capsys):
    model, d = run
    ro = tmp_path/'ro'; ro.mkdir()
    if subprocess.run(['chattr', '+i', str(ro)], capture_output=True).returncode != 0:
        os.chmod(ro, 0o555)
        if os.access(ro, os.W_OK): pytest.skip('cannot make a folder read-only here (root without chattr)')
    try:
        img = sorted((d/'data'/'test'/'benign').glob('*.jpg'))[0]
        status, out, err = _call('predict_main', ['--model', model, img, '--gradcam', ro], capsys)
    finally:
        subprocess.run(['chattr', '-i', str(ro)], capture_output=True); os.chmod(ro, 0o755)
    assert status == 2 and out == '' and err.count('\n') == 1 and 'Traceback' not in err, err
    assert f'{ro}: cannot write the Grad-CAM overlays there' in err, err


def test_gradcam_folder_held_by_another_predict_refused(run, tmp_path, capsys):
    "Issue 34: a --gradcam folder whose lock another melanoma-predict holds: refused in one line, before any image."
    import fcntl
    model, d = run
    cams = tmp_path/'cams'; cams.mkdir(); (cams/'x_gradcam.png').write_bytes(b'old')
    img = sorted((d/'data'/'test'/'benign').glob('*.jpg'))[0]
    fd = os.open(cams/'.predict.lock', os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX)   # a live predict holds it
    try: status, out, err = _call('predict_main', ['--model', model, img, '--gradcam', cams], capsys)
    finally: os.close(fd)
    assert status == 2 and out == '' and err.count('\n') == 1 and 'Traceback' not in err, err
    assert f'another melanoma-predict is writing to {cams} now; nothing was changed' in err and '--gradcam DIR' in err, err
    assert sorted(p.name for p in cams.iterdir()) == ['.predict.lock', 'x_gradcam.png']
    assert (cams/'x_gradcam.png').read_bytes() == b'old'
    status, out, err = _call('predict_main', ['--model', model, img, '--gradcam', cams], capsys)   # free: runs, no lock left
    assert status == 0 and not (cams/'.predict.lock').exists() and len(list(cams.glob('*_gradcam.png'))) == 2, err
