"""melanoma-app over HTTP: four concurrent sessions, bad uploads (the server keeps serving), nothing left on disk,
and the command's one-line refusals. The page itself in a browser: test_app_browser.py."""
import os, re, shutil, struct, subprocess, sys, threading, time, zlib
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
    "Drop `paths` as the page does (upload and claim, then the analysis); -> the cards' HTML."
    c = gradio_client.Client(url, verbose=False)
    c.predict([gradio_client.handle_file(str(p)) for p in paths], api_name='/claim')
    return c.predict(method, api_name='/analyse')[0]    # (the cards, the status line)


def _cards(an, paths, root, method=None):
    "The cards of `paths` analysed in-process, as one session of the app."
    return list(A.analyse_session(an, A.claim(paths, root, 'test'), method))[-1][0]


def test_four_sessions_at_once(server):
    "4 clients, 10 images each, at the same time: each gets its own 10 results, equal to the in-process ones."
    an, demo = server
    imgs = sorted((sample_root()/'test').rglob('*.jpg'))[:40]
    want = {p.name: float(an.explain(A.read_upload(p, an.pred.size, an.pred.channels)[0][None]).p[0]) for p in imgs}
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
    page = _cards(an, [up/'huge.jpg'], tmp_path/'root')
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
    from melanoma_nb.checkpoint import load_checkpoint
    from melanoma_nb.evaluation import Predictor
    model, meta = load_checkpoint(model_file)
    pred = Predictor(model, {**meta, 'metrics': metrics, 'recipe': ['x']}, tmp_path/'model.pt')
    (tmp_path/'eval').mkdir()
    (tmp_path/'eval'/'metrics.json').write_text('{"ci": {"roc_auc": ["a", null]}, "roc_auc": "x", "n": [3]}')
    card = A.model_card(pred)
    assert 'n/a' in card and 'Model card' in card
    assert 'At threshold' in A.threshold_meaning(pred) and A.demo_reasons(pred)


def test_thin_strip_upload_gets_a_message(model_file, tmp_path):
    import cv2
    an = A.Analyser.from_file(model_file)
    cv2.imwrite(str(tmp_path/'thin.png'), np.full((50000, 1, 3), 128, np.uint8))
    good = sorted((sample_root()/'test'/'benign').glob('*.jpg'))[0]
    page = _cards(an, [tmp_path/'thin.png', good], tmp_path/'root')
    assert 'a strip rather than a photo' in page and page.count('class="mn-overlay"') == 1 and 'internal error' not in page


def test_display_honours_exif_orientation(tmp_path):
    import cv2
    from test_data_limits import _with_orientation
    img = np.zeros((40, 80, 3), np.uint8); img[:, :40] = 255
    (tmp_path/'p.jpg').write_bytes(_with_orientation(cv2.imencode('.jpg', img)[1].tobytes(), 6, True))
    x, disp = A.read_upload(tmp_path/'p.jpg', 32, 3)
    assert disp.shape[0] > disp.shape[1]                              # portrait, as shown by any photo viewer
    assert disp[:10].mean() > 200 and disp[-10:].mean() < 60


@pytest.fixture(scope='module')
def three_classes(tmp_path_factory):
    """A 3-class model (the sample's benign images split into benign and nevus), its thresholds (single view and TTA)
    set to the median p of 12 test images, so that the images fall on both sides; -> (checkpoint, images)."""
    from melanoma_nb.checkpoint import load_checkpoint, save_checkpoint
    from melanoma_nb.evaluation import Predictor
    from melanoma_nb.training import Recipe, fit
    d = tmp_path_factory.mktemp('three')
    for split in ('train', 'test'):
        for c in ('benign', 'malignant'):
            for k, f in enumerate(sorted((sample_root()/split/c).glob('*.jpg'))):
                to = d/'data'/split/('nevus' if c == 'benign' and k % 2 else c); to.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, to/f.name)
    cache = prepare(d/'data', size=32, channels=3, cache_dir=d/'cache', progress=False, verbose=False)
    fit(Recipe(arch='cnn', size=32, channels=3, epochs=1, seed=0, positive='malignant'), cache, out_dir=d/'run',
        progress=False, verbose=False)
    imgs = sorted((d/'data'/'test').rglob('*.jpg'))[::4][:12]
    pred = Predictor.from_file(d/'run'/'model.pt')
    x = np.stack([A.read_upload(f, pred.size, pred.channels)[0] for f in imgs])
    model, meta = load_checkpoint(d/'run'/'model.pt')
    meta = {**meta, 'threshold': float(np.median(pred.proba(x))), 'threshold_tta': float(np.median(pred.proba(x, tta=True)))}
    save_checkpoint(d/'run'/'model.pt', model, meta)
    return d/'run'/'model.pt', imgs


@pytest.mark.parametrize('tta', [False, True])
def test_one_answer_app_and_predict(three_classes, tta, tmp_path):
    """Issue 33: on a 3-class model the app and `melanoma-predict --gradcam` give the same p (to the printed digits),
    the same decision and a map of the same class, for images on both sides of the threshold, with and without TTA."""
    import json
    model, imgs = three_classes
    r = subprocess.run([sys.executable, '-c', 'import sys; from melanoma_nb.cli import predict_main; sys.exit(predict_main())',
                        '--model', str(model), '--gradcam', str(tmp_path/'maps'), *(['--tta'] if tta else []), *map(str, imgs)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    cli = {Path(d['path']).name: d for d in map(json.loads, r.stdout.splitlines())}
    an = A.Analyser.from_file(model)
    env = os.environ.get('GRADIO_TEMP_DIR')   # Gradio reads it at each upload: the module's `server` keeps its own
    demo = A.serve(an)
    try:
        c = gradio_client.Client(demo.local_url, verbose=False)
        c.predict([gradio_client.handle_file(str(p)) for p in imgs], api_name='/claim')
        page = c.predict(an.method, tta, api_name='/analyse')[0]
    finally:
        A.close_app(demo)
        if env is not None: os.environ['GRADIO_TEMP_DIR'] = env
    app = {n: (float(p), d, m) for n, p, d, m in
           re.findall(r'data-name="([^"]+)" data-p="([0-9.]+)" data-decision="([^"]+)" data-map="([^"]+)"', page)}
    assert sorted(app) == sorted(cli) == sorted(p.name for p in imgs)
    for n, (p, decision, shown) in app.items():
        assert abs(p - cli[n]['p_malignant']) <= 1e-6, (n, p, cli[n])          # 6 digits, as both print them
        assert (decision, shown) == (cli[n]['call'], cli[n]['gradcam_class']), (n, decision, shown, cli[n])
    calls = {d for _, d, _ in app.values()}
    assert calls == {'malignant', 'not malignant'}, calls                    # both sides of the threshold
    assert {m for _, _, m in app.values()} - {'malignant'}, 'no map of a class other than the positive one'
    t = an.threshold_tta if tta else an.threshold
    assert f'threshold {t:.2f}' in page


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


# --- issue 34: memory, traffic, uploads that wait, a killed app's folder, EXIF in PNG/WebP, nameless uploads, SIGTERM

@pytest.mark.parametrize('fmt', ['PNG', 'WEBP'])
def test_display_honours_exif_orientation_png_webp(fmt, tmp_path):
    "OpenCV turns PNG and WebP by their EXIF orientation too: the display keeps the turned aspect (was squeezed)."
    from PIL import Image
    img = np.zeros((40, 80, 3), np.uint8); img[:, :40] = 255
    exif = Image.Exif(); exif[0x0112] = 6
    f = tmp_path/f'p.{fmt.lower()}'
    Image.fromarray(img).save(f, fmt, exif=exif.tobytes(), **({'lossless': True} if fmt == 'WEBP' else {}))
    x, disp = A.read_upload(f, 32, 3)
    assert disp.shape == (256, 128, 3), disp.shape                   # portrait (the longer side 256 px), as any viewer shows it
    assert disp[:20].mean() > 200 and disp[-20:].mean() < 60


def test_nameless_upload_is_refused_not_a_500(server):
    "A multipart part with an empty file name: HTTP 400 and the reason (Gradio alone answers 500); the app goes on."
    import httpx
    an, demo = server
    r = httpx.post(demo.local_url + 'gradio_api/upload', files={'files': ('', b'abc')}, timeout=60)
    assert r.status_code == 400 and r.text == A.UPLOAD_NO_NAME, (r.status_code, r.text[:300])
    good = sorted((sample_root()/'test'/'benign').glob('*.jpg'))[0]
    assert list(_ps(_upload(demo.local_url, [good]))) == [good.name]


def test_drop_outlasting_the_cache_expiry(model_file, tmp_path):
    """Unclaimed uploads are deleted after the expiry (1 s here); a drop whose analysis takes longer (8 images, 0.5 s
    each) still gets every result, because the app claimed its uploads at once; they go when the app closes."""
    an = A.Analyser.from_file(model_file)
    analyse = an.analyse
    def slow(*a, **k): time.sleep(0.5); return analyse(*a, **k)
    an.analyse = slow
    imgs = sorted((sample_root()/'test').rglob('*.jpg'))[:8]
    demo = A.serve(an, expiry=1)
    try:
        page = _upload(demo.local_url, imgs)
        cached = [f for f in Path(demo.upload_dir).glob('*/*') if f.parent.name != 'sessions']
        assert cached == [], f"the expiry did not run: {cached}"        # so the test did outlast it
        assert sorted(_ps(page)) == sorted(p.name for p in imgs), page[:3000]
        assert 'mn-error' not in page
    finally: A.close_app(demo)
    assert not Path(demo.upload_dir).exists()


def test_a_folder_given_as_an_upload_stops_nothing(model_file):
    """A client that names the upload folder itself as a file: Gradio accepts it (it is its cache folder). Uploads still
    expire afterwards (Gradio's own expiry, os.remove on every path it was given, raised on it and stopped for good)."""
    import httpx, uuid
    demo = A.serve(A.Analyser.from_file(model_file), expiry=1)
    try:
        cfg = httpx.get(demo.local_url + 'config', timeout=60).json()
        fn = next(i for i, d in enumerate(cfg['dependencies']) if d.get('api_name') == 'claim')
        r = httpx.post(demo.local_url + 'gradio_api/run/predict', timeout=60, json={
            'data': [[{'path': str(demo.upload_dir), 'meta': {'_type': 'gradio.FileData'}}]], 'fn_index': fn,
            'session_hash': uuid.uuid4().hex, 'event_data': None, 'trigger_id': None})
        assert r.status_code == 200, r.text[:500]
        time.sleep(2.5)                                                   # an expiry round or two with it
        good = sorted((sample_root()/'test'/'benign').glob('*.jpg'))[0]
        up = httpx.post(demo.local_url + 'gradio_api/upload', files={'files': (good.name, good.read_bytes())},
                        timeout=60).json()[0]
        t0 = time.monotonic()
        while Path(up).exists() and time.monotonic() - t0 < 20: time.sleep(0.2)
        assert not Path(up).exists(), 'an unclaimed upload did not expire'
        assert list(_ps(_upload(demo.local_url, [good]))) == [good.name]   # and it still serves
    finally: A.close_app(demo)


def _sigterm_at(tmp_path, model_file, marker: str):
    "Start `melanoma-app` (as its console script), send SIGTERM once `marker` is mapped in its memory; -> the process."
    import os, signal
    code = ("import sys; sys.argv[0] = '/usr/local/bin/melanoma-app'\n"          # as the console script's wrapper has it
            "from melanoma_nb.app import app_main; sys.exit(app_main())")
    p = subprocess.Popen([sys.executable, '-c', code, '--model', str(model_file), '--port', '0'], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, 'TMPDIR': str(tmp_path)})
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and p.poll() is None:
        try:
            if marker in Path(f'/proc/{p.pid}/maps').read_text(): break
        except OSError: pass
        time.sleep(0.005)
    p.send_signal(signal.SIGTERM)
    p.wait(120)
    return p


@pytest.mark.skipif(not Path('/proc/self/maps').exists(), reason='needs /proc to see how far start-up went')
@pytest.mark.parametrize('marker', ['cv2', 'libtorch'])
def test_sigterm_early_in_startup(marker, model_file, tmp_path):
    """SIGTERM while the command imports its modules (OpenCV's library just mapped) or loads PyTorch: the app's own
    'interrupted' and status 130, not 143 (killed by the signal's default action); no upload folder left."""
    p = _sigterm_at(tmp_path, model_file, marker)
    err = p.stderr.read()
    assert p.returncode == 130, (p.returncode, err[-2000:])
    assert err.strip().splitlines() == ['melanoma-app: interrupted'], err[-2000:]
    assert list(tmp_path.glob('melanoma-app-*')) == []


def test_killed_apps_folder_removed_at_next_start(tmp_path):
    "An app killed with SIGKILL cannot remove its upload folder; the next app's start removes it (its pid is gone)."
    p = subprocess.Popen([sys.executable, '-c', 'pass']); p.wait()
    dead = tmp_path/f'melanoma-app-{p.pid}-abc'; (dead/'sessions'/'x').mkdir(parents=True)
    other = tmp_path/'melanoma-app-nb-keep'; other.mkdir()
    root = A.upload_root(tmp_path)
    assert not dead.exists() and other.exists() and root.name.startswith(f'melanoma-app-{__import__("os").getpid()}-')


def test_gradio_that_fails_to_import_is_said_at_once(model_file, tmp_path):
    """A `gradio` package that raises ImportError (found by the import system, so only importing it tells): the hint
    comes before PyTorch or the model loads, in under 1.5 s of CPU time."""
    import os, resource
    (tmp_path/'gradio').mkdir(); (tmp_path/'gradio'/'__init__.py').write_text("raise ImportError('gradio is broken here')")
    code = ("import sys; from melanoma_nb.app import app_main; r = app_main(); "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules)); sys.exit(r)")
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')])}
    def cpu(): u = resource.getrusage(resource.RUSAGE_CHILDREN); return u.ru_utime + u.ru_stime
    t = cpu()
    r = subprocess.run([sys.executable, '-c', code, '--model', str(model_file)], capture_output=True, text=True,
                       timeout=120, env=env)
    took = cpu() - t
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert "pip install 'melanoma_nb[app]'" in r.stderr and r.stdout.strip() == '[]', (r.stdout, r.stderr)
    assert took < 1.5, f"{took:.2f} s"


# --- the app's memory and traffic, measured on a running `melanoma-app` (slow: minutes)

def _smooth_jpegs(d: Path, n: int, side: int = 1024) -> list:
    "`n` different smooth `side`-px JPEGs (a few tens of kB each, as the attack's 'small' images)."
    import cv2
    d.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:side, :side] / side
    out = []
    for k in range(n):
        img = np.stack([128 + 100 * np.sin(6 * xx + k), 128 + 100 * np.cos(5 * yy + k / 3), 128 + 60 * np.sin(3 * (xx + yy))], -1)
        cv2.circle(img, (side // 2 + 7 * k, side // 2), side // 5, (40, 30, 20), -1)
        cv2.imwrite(str(d/f'lesion_{k:02d}.jpg'), img.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 80])
        out.append(d/f'lesion_{k:02d}.jpg')
    return out


def _streamed(url: str, paths, method='Grad-CAM') -> tuple:
    "Drop `paths` as the page does; -> (bytes streamed back while the drop is analysed, the final cards' HTML)."
    import httpx, json
    c = gradio_client.Client(url, verbose=False)
    c.predict([gradio_client.handle_file(str(p)) for p in paths], api_name='/claim')
    fn = next(i for i, d in enumerate(c.config['dependencies']) if d.get('api_name') == 'analyse')
    base = url.rstrip('/') + '/gradio_api/queue/'
    httpx.post(base + 'join', json={'data': [None, method, False], 'fn_index': fn, 'session_hash': c.session_hash,
                                    'event_data': None, 'trigger_id': None}, timeout=60).raise_for_status()
    n, final = 0, None
    with httpx.stream('GET', base + 'data', params={'session_hash': c.session_hash}, timeout=600) as s:
        for line in s.iter_lines():
            n += len(line.encode()) + 1
            if line.startswith('data:') and (m := json.loads(line[5:])).get('msg') == 'process_completed':
                final = m; break
    assert final and final.get('success'), final
    return n, final['output']['data'][0]


def _rss_mb(pid: int) -> float:
    return int(re.search(r'VmRSS:\s+(\d+)', Path(f'/proc/{pid}/status').read_text())[1]) / 1024


@pytest.mark.slow
def test_memory_flat_and_traffic_linear(model_file, tmp_path):
    """On a running `melanoma-app`: 5 sessions of 50 smooth 1024-px JPEGs; the server's memory after sessions 2-5 stays
    within 60 MB of its level after the first (it grew ~150 MB per session when sessions kept their images). The bytes
    streamed for a drop grow linearly: at most 4 kB per image, and 20 images cost no more per image than 5 (+20 %)."""
    import os, signal
    imgs = _smooth_jpegs(tmp_path/'imgs', 50)
    p = subprocess.Popen([sys.executable, '-c', 'import sys; from melanoma_nb.app import app_main; sys.exit(app_main())',
                          '--model', str(model_file), '--port', '0'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, 'TMPDIR': str(tmp_path)})
    try:
        url = re.search(r'serving on (http://\S+)', p.stdout.readline())[1] + '/'
        small, _ = _streamed(url, imgs[:5])
        big, page = _streamed(url, imgs[:20])
        assert len(_ps(page)) == 20
        rss = []
        for k in range(5):
            _, page = _streamed(url, imgs)
            assert len(_ps(page)) == 50, page[:2000]
            time.sleep(1); rss.append(_rss_mb(p.pid))
        print(f"streamed: 5 images {small} B, 20 images {big} B; RSS after each session (MB): {[round(r) for r in rss]}")
        assert big / 20 <= 4000 and big / 20 <= 1.2 * small / 5, (small, big)
        assert max(rss[1:]) - rss[0] <= 60, rss
    finally:
        p.send_signal(signal.SIGTERM); p.wait(60)
    assert list(tmp_path.glob('melanoma-app-*')) == []


def test_app_imports_no_private_name():
    "Issue 33: the app uses the library's public names only (console's Parser and run, not cli's _Parser and _run)."
    import ast
    tree = ast.parse(Path(A.__file__).read_text())
    bad = [(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
           and (n.level or (n.module or '').startswith('melanoma_nb')) for a in n.names if a.name.startswith('_')]
    assert bad == [], bad
