"""melanoma-app over HTTP: four concurrent sessions, bad uploads (the server keeps serving), nothing left on disk,
and the command's one-line refusals. The page itself in a browser: test_app_browser.py."""
import re, shutil, struct, subprocess, sys, threading, zlib
from pathlib import Path

import numpy as np
import pytest

from melanoma_nb.data import prepare, sample_root

gradio_client = pytest.importorskip('gradio_client', reason="melanoma-app needs pip install 'melanoma_nb[app]'")
from melanoma_nb import app as A


@pytest.fixture(scope='module')
def server(model_file):
    an = A.Analyser.from_file(model_file)
    demo = A.serve(an)
    yield an, demo
    A.close_app(demo)


def _ps(page: str) -> dict:
    return {n: float(p) for n, p in re.findall(r'data-name="([^"]+)" data-p="([0-9.]+)"', page)}


def _upload(url, paths, method='Grad-CAM'):
    c = gradio_client.Client(url, verbose=False)
    return c.predict([gradio_client.handle_file(str(p)) for p in paths], method, api_name='/on_upload')[0]   # (page, emptied upload box)


def test_four_sessions_at_once(server):
    "4 clients, 10 images each, at the same time: each gets its own 10 results, equal to the in-process ones."
    an, demo = server
    imgs = sorted((sample_root()/'test').rglob('*.jpg'))[:40]
    want = {p.name: float(an.explain(A.read_upload(p, an.meta['size'], an.meta['in_chans'])[0][None])[0][0]) for p in imgs}
    pages, errors = [None] * 4, []
    def session(k):
        try: pages[k] = _upload(demo.local_url, imgs[10 * k:10 * k + 10], ('Grad-CAM', 'Grad-CAM++')[k % 2])
        except Exception as e: errors.append(e)
    ts = [threading.Thread(target=session, args=(k,)) for k in range(4)]
    for t in ts: t.start()
    for t in ts: t.join(180)
    assert not errors, errors
    for k, page in enumerate(pages):
        got = _ps(page)
        assert sorted(got) == sorted(p.name for p in imgs[10 * k:10 * k + 10])
        np.testing.assert_allclose([got[n] for n in sorted(got)], [want[n] for n in sorted(got)], atol=1e-5)
        assert page.count('class="mn-overlay"') == 10
        assert ('Grad-CAM++:' in page) == (k % 2 == 1)


def test_bad_uploads_get_a_message(server, tmp_path):
    "Each bad file gets its message on the page; the good image among them is analysed; the server keeps serving."
    an, demo = server
    good = sorted((sample_root()/'test'/'malignant').glob('*.jpg'))[0]
    (tmp_path/'notes.jpg').write_text('not an image\n' * 50)
    (tmp_path/'empty.jpg').write_bytes(b'')
    (tmp_path/'cut.jpg').write_bytes(good.read_bytes()[:3000])
    ihdr = struct.pack('>IIBBBBB', 100_000, 100_000, 8, 2, 0, 0, 0)
    (tmp_path/'bomb.png').write_bytes(b'\x89PNG\r\n\x1a\n' + struct.pack('>I', 13) + b'IHDR' + ihdr
                                      + struct.pack('>I', zlib.crc32(b'IHDR' + ihdr)) + b'\0' * 64)
    bad = ['notes.jpg', 'empty.jpg', 'cut.jpg', 'bomb.png']
    page = _upload(demo.local_url, [tmp_path/n for n in bad] + [good])
    msgs = dict(re.findall(r'data-name="([^"]+)"><b>[^<]*</b>: <span class="mn-message">([^<]*)</span>', page))
    assert sorted(msgs) == sorted(bad), page[:2000]
    assert 'not a recognised image format' in msgs['notes.jpg'] and 'empty file (0 bytes)' in msgs['empty.jpg']
    assert 'truncated' in msgs['cut.jpg'] and 'decompression bomb' in msgs['bomb.png']
    assert list(_ps(page)) == [good.name]
    assert list(_ps(_upload(demo.local_url, [good]))) == [good.name]          # still serving


def test_huge_upload_refused(server, tmp_path):
    "Over MAX_UPLOAD_MB: refused at upload (HTTP 413, nothing kept); in the handler, a message; then it still serves."
    import httpx
    an, demo = server
    huge = tmp_path/'huge.jpg'
    with open(huge, 'wb') as f: f.truncate((A.MAX_UPLOAD_MB + 1) * 2**20)
    with open(huge, 'rb') as f:
        r = httpx.post(demo.local_url.rstrip('/') + '/gradio_api/upload', files={'files': ('huge.jpg', f)}, timeout=60)
    assert r.status_code == 413, (r.status_code, r.text[:300])
    up = tmp_path/'up'/'x'; up.mkdir(parents=True); shutil.copy(huge, up/'huge.jpg')
    page, _ = list(A.analyse_uploads(an, [up/'huge.jpg']))[-1]
    assert f'over the limit of {A.MAX_UPLOAD_MB} MB' in page
    good = sorted((sample_root()/'test'/'benign').glob('*.jpg'))[0]
    assert list(_ps(_upload(demo.local_url, [good]))) == [good.name]


def _app(*args, cwd=None):
    return subprocess.run([sys.executable, '-c', 'import sys; from melanoma_nb.app import app_main; sys.exit(app_main())',
                           *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize('what', ['not_a_checkpoint', 'a_state_dict', 'missing', 'no_model_here'])
def test_refused_at_start(what, tmp_path):
    "A model file that is not a checkpoint, or no model at all: one line `melanoma-app: error: ...`, exit status 2."
    import torch
    f = tmp_path/'model.pt'
    if what == 'not_a_checkpoint': f.write_text('hello')
    if what == 'a_state_dict': torch.save({'w': torch.zeros(2)}, f)
    r = _app(*([] if what == 'no_model_here' else ['--model', f]), cwd=tmp_path)
    err = r.stderr.strip()
    assert r.returncode == 2 and 'Traceback' not in err, err
    assert len(err.splitlines()) == 1 and err.startswith('melanoma-app: error: '), err
    if what == 'no_model_here': assert '`melanoma-train`' in err and 'runs/latest/model.pt' in err


def test_gradio_missing_is_one_line(model_file, tmp_path):
    "Without Gradio the command names the extra to install."
    (tmp_path/'gradio').mkdir(); (tmp_path/'gradio'/'__init__.py').write_text("raise ImportError('No module named gradio')")
    r = subprocess.run([sys.executable, '-c', f'import sys; sys.path.insert(0, {str(tmp_path)!r}); '
                        'from melanoma_nb.app import app_main; sys.exit(app_main())', '--model', str(model_file)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "pip install 'melanoma_nb[app]'" in r.stderr


def test_gradio_not_installed_said_at_once(model_file):
    """Gradio absent (as without the [app] extra): the one line comes before any model or PyTorch is loaded, in under
    1.5 s of CPU time (CPU, not wall time, so that other work on the machine does not make the test fail)."""
    import resource
    code = ("import sys; sys.modules['gradio'] = None; from melanoma_nb.app import app_main; r = app_main(); "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules)); sys.exit(r)")
    def cpu(): u = resource.getrusage(resource.RUSAGE_CHILDREN); return u.ru_utime + u.ru_stime
    t = cpu()
    r = subprocess.run([sys.executable, '-c', code, '--model', str(model_file)], capture_output=True, text=True, timeout=120)
    took = cpu() - t
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "pip install 'melanoma_nb[app]'" in r.stderr and r.stdout.strip() == '[]', (r.stdout, r.stderr)
    assert took < 1.5, f"{took:.2f} s"


def test_serving_line_means_the_page_answers(model_file):
    "The moment 'serving on URL' is printed, the URL answers; Ctrl+C (SIGINT) then stops the app with status 0."
    import signal, urllib.request
    port = A.free_port()
    code = ('import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)\n'   # Ctrl-C as a user has it
            'from melanoma_nb.app import app_main; sys.exit(app_main())')
    p = subprocess.Popen([sys.executable, '-c', code, '--model', str(model_file), '--port', str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = p.stdout.readline()
        assert 'serving on http://127.0.0.1:' in line, (line, p.stderr.read() if p.poll() is not None else '')
        url = line.split('serving on ')[1].split()[0]
        with urllib.request.urlopen(url, timeout=5) as resp: assert resp.status == 200
        p.send_signal(signal.SIGINT)
        assert p.wait(180) == 0
    finally:
        if p.poll() is None: p.kill(); p.wait()


def test_help_lists_the_exit_statuses():
    "melanoma-app --help, like every command's, ends with its exit statuses; and it loads no PyTorch."
    r = _app('--help')
    assert r.returncode == 0, r.stderr
    table = r.stdout[r.stdout.index('exit status:'):]
    for code, word in (('0', 'Ctrl+C'), ('1', 'a bug'), ('2', 'a user error')): assert f'  {code} ' in table and word in table


# --- issue 25 (H, I, L): the card on edited checkpoints, odd uploads, the port, SIGTERM, EXIF, three classes

@pytest.mark.parametrize('metrics', [None, [], 'x', {'val_auc': 'high', 'n_val': [1], 'val_sens': None}])
def test_card_on_edited_metrics(model_file, metrics, tmp_path):
    from melanoma_nb.checkpoint import read_checkpoint
    meta = {**read_checkpoint(model_file)['meta'], 'metrics': metrics, 'recipe': ['x']}
    (tmp_path/'eval').mkdir()
    (tmp_path/'eval'/'metrics.json').write_text('{"ci": {"roc_auc": ["a", null]}, "roc_auc": "x", "n": [3]}')
    card = A.model_card(meta, tmp_path/'model.pt')
    assert 'n/a' in card and 'Model card' in card
    assert 'At threshold' in A.threshold_meaning(meta)


def test_thin_strip_upload_gets_a_message(model_file, tmp_path):
    import cv2
    an = A.Analyser.from_file(model_file)
    cv2.imwrite(str(tmp_path/'thin.png'), np.full((50000, 1, 3), 128, np.uint8))
    good = sorted((sample_root()/'test'/'benign').glob('*.jpg'))[0]
    page, kept = list(A.analyse_uploads(an, [tmp_path/'thin.png', good]))[-1]
    assert 'a strip rather than a photo' in page and len(kept) == 1 and 'internal error' not in page


def test_display_honours_exif_orientation(tmp_path):
    import cv2
    from test_data_limits import _with_orientation
    img = np.zeros((40, 80, 3), np.uint8); img[:, :40] = 255
    (tmp_path/'p.jpg').write_bytes(_with_orientation(cv2.imencode('.jpg', img)[1].tobytes(), 6, True))
    x, disp = A.read_upload(tmp_path/'p.jpg', 32, 3)
    assert disp.shape[0] > disp.shape[1]                              # portrait, as shown by any photo viewer
    assert disp[:10].mean() > 200 and disp[-10:].mean() < 60


def test_three_classes_named_as_the_cli_does(model_file):
    from melanoma_nb.checkpoint import read_checkpoint
    from melanoma_nb.metrics import decision_names
    ck = read_checkpoint(model_file)
    meta = {**ck['meta'], 'classes': ['benign', 'malignant', 'nevus'], 'positive': 'malignant'}
    an = A.Analyser.__new__(A.Analyser)
    an.meta, an.classes, an.pos, an.threshold = meta, meta['classes'], 1, 0.5
    neg, pos = decision_names(meta['classes'], 1)
    assert (an.decide(0.2), an.decide(0.7)) == (neg, pos) == ('not malignant', 'malignant')
    assert an.target(0.2) == an.target(0.7) == 1                      # Grad-CAM explains the positive, as melanoma-predict


@pytest.mark.parametrize('port', ['70000', '-1', 'x'])
def test_bad_port_one_line_no_folder_left(port, model_file, tmp_path):
    r = subprocess.run([sys.executable, '-c', 'import sys; from melanoma_nb.app import app_main; sys.exit(app_main())',
                        '--model', str(model_file), '--port', port], capture_output=True, text=True, timeout=120,
                       env={**__import__('os').environ, 'TMPDIR': str(tmp_path)})
    assert r.returncode == 2 and 'Traceback' not in r.stderr and r.stderr.startswith('melanoma-app: error:'), r.stderr
    assert list(tmp_path.glob('melanoma-app-*')) == []


def test_sigterm_port_0_and_cleanup(model_file, tmp_path):
    import os, signal, time
    p = subprocess.Popen([sys.executable, '-c', 'import sys; from melanoma_nb.app import app_main; sys.exit(app_main())',
                          '--model', str(model_file), '--port', '0'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, 'TMPDIR': str(tmp_path)})
    try:
        line = p.stdout.readline()
        port = int(re.search(r'serving on http://127\.0\.0\.1:(\d+)', line)[1])
        assert port != 0
        import httpx
        assert httpx.get(f'http://127.0.0.1:{port}/', timeout=30).status_code == 200     # announced = listening
        assert len(list(tmp_path.glob('melanoma-app-*'))) == 1
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    finally:
        if p.poll() is None: p.kill()
    assert list(tmp_path.glob('melanoma-app-*')) == [], 'the upload folder was left behind'
