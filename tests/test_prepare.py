"""The data side of what an outside attack on the console scripts found.

Special files in a data folder (a named pipe, dangling and looping links, an unreadable class folder), JPEGs whose data
is damaged but still decode, archives that share a name, archives that are damaged, malformed or bombs, two
`melanoma-prepare` runs on one cache at once, a damaged cache, float TIFFs. Each cause is reproduced the way a user
meets it, from the command line, and each run has a time limit, so a regression to a hang fails instead of blocking.
"""
import io, json, os, select, shutil, subprocess, sys, tarfile, time, zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from melanoma_nb.data import DataError, ImageReadError, cache_dir_for, build_cache, read_image, safe_extract, scan
from conftest import assert_user_error, script_cmd

T = 60           # seconds any one command may take here: far above a normal run, far below "hung"

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='POSIX special files and locks')


def _folder(tmp_path: Path, sample: Path, n: int = 4, name: str = 'data') -> Path:
    "A split folder: the first `n` sample training images of each class."
    d = tmp_path/name
    for cls in ('benign', 'malignant'):
        (d/cls).mkdir(parents=True)
        for f in sorted((sample/'train'/cls).glob('*.jpg'))[:n]: shutil.copy(f, d/cls/f.name)
    return d


def _prepare(run_script, data, cache, *args, env=None):
    return run_script('melanoma-prepare', data, '--size', 32, '--cache', cache, '--no-progress', *args, timeout=T, env=env)


def _skipped(stdout: str) -> dict:
    "{file name: reason} from the 'skipped PATH: REASON' lines of a report."
    out = {}
    for l in stdout.splitlines():
        if l.strip().startswith('skipped '):
            p, why = l.strip()[len('skipped '):].split(': ', 1)
            out[Path(p).name] = why
    return out


def _ok(r):
    assert r.returncode == 0 and 'Traceback' not in r.stderr, f"status {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def _half_jpeg(good: bytes, frac: float = 0.5) -> bytes:
    "A JPEG cut short, with its end-of-image marker put back (so it is not 'truncated' by its last bytes)."
    return good[:int(len(good) * frac)] + b'\xff\xd9'


# --------------------------------------------------------------------------------------------------------------------
# 1. Special files: only regular files are read; the rest is listed with its reason and never blocks.

@pytest.fixture
def special(tmp_path, sample):
    d = _folder(tmp_path, sample)
    (d/'malignant'/'link-to-good.jpg').symlink_to(sorted((d/'benign').glob('*.jpg'))[0])   # a link to a file: fine
    os.mkfifo(d/'benign'/'pipe.jpg')
    (d/'benign'/'dangling.jpg').symlink_to(tmp_path/'nowhere.jpg')
    (d/'malignant'/'loop.jpg').symlink_to('loop.jpg')
    (d/'malignant'/'ping.png').symlink_to('pong.png'); (d/'malignant'/'pong.png').symlink_to('ping.png')
    return d

SPECIAL = {'pipe.jpg': 'named pipe', 'dangling.jpg': 'broken symbolic link', 'loop.jpg': 'symbolic link loop',
           'ping.png': 'symbolic link loop', 'pong.png': 'symbolic link loop'}
CLASS = {'pipe.jpg': 'benign', 'dangling.jpg': 'benign'}

def test_special_files_prepare(special, run_script, tmp_path):
    r = _ok(_prepare(run_script, special, tmp_path/'cache'))
    reasons = _skipped(r.stdout)
    for name, phrase in SPECIAL.items(): assert phrase in reasons.get(name, ''), (name, r.stdout)
    assert 'usable: 9   skipped: 5' in r.stdout, r.stdout

def test_special_files_audit(special, run_script):
    _ok(run_script('melanoma-audit', special, '--no-progress', timeout=T))

def _bounded(fn, timeout=T):
    "fn() in a daemon thread: its exception or result, or a failure (not a hang) when it does not return in time."
    import threading
    box = {}
    def run():
        try: box['ok'] = fn()
        except BaseException as e: box['err'] = e
    t = threading.Thread(target=run, daemon=True); t.start(); t.join(timeout)
    assert not t.is_alive(), f'still running after {timeout} s (blocked?)'
    if 'err' in box: raise box['err']
    return box['ok']

def test_special_files_read_image(special):
    for name, phrase in SPECIAL.items():
        with pytest.raises(ImageReadError, match=phrase): _bounded(lambda: read_image(special/CLASS.get(name, 'malignant')/name, 32, 3))


def test_unreadable_class_folder(tmp_path, sample, monkeypatch):
    "chmod 000 does not stop root, so the refusal is simulated here; the next test does it for real as another user."
    d = _folder(tmp_path, sample)
    real = Path.iterdir
    def iterdir(self):
        if self == d/'malignant': raise PermissionError(13, 'Permission denied', str(self))
        return real(self)
    monkeypatch.setattr(Path, 'iterdir', iterdir)
    with pytest.raises(DataError) as ei: scan(d)
    assert str(d/'malignant') in str(ei.value) and 'Permission denied' in str(ei.value) and 'chmod' in str(ei.value)


def _as_nobody():
    os.setgid(65534); os.setuid(65534)

def test_unreadable_class_folder_cli(tmp_path, sample, cli_env):
    top = Path(os.environ.get('TMPDIR', '/tmp'))/f'melanoma-perm-{os.getpid()}'
    shutil.rmtree(top, ignore_errors=True)
    d = _folder(top, sample)
    try:
        for p in [top, *top.rglob('*')]: p.chmod(0o777 if p.is_dir() else 0o666)
        (d/'malignant').chmod(0)
        env = {**cli_env, 'MELANOMA_CACHE': str(top/'cache'), 'HOME': str(top)}
        preexec = _as_nobody if os.geteuid() == 0 else None
        try: r = subprocess.run(script_cmd('melanoma-prepare') + [str(d), '--size', '32', '--no-progress'],
                                capture_output=True, text=True, timeout=T, env=env, preexec_fn=preexec, cwd=top)
        except (PermissionError, subprocess.SubprocessError) as e: pytest.skip(f'cannot run as another user: {e}')
        if 'ModuleNotFoundError' in r.stderr or 'ImportError' in r.stderr: pytest.skip('the other user cannot import the package')
        assert_user_error(r, 'melanoma-prepare', str(d/'malignant'), 'Permission denied')
    finally:
        (d/'malignant').chmod(0o755); shutil.rmtree(top, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------------
# 2. Damaged JPEGs that still decode (as gray): skipped and named, no unnamed libjpeg line on stderr.

def test_damaged_jpeg_prepare(tmp_path, sample, run_script):
    d = _folder(tmp_path, sample)
    good = sorted((d/'benign').glob('*.jpg'))[0].read_bytes()
    (d/'benign'/'half.jpg').write_bytes(_half_jpeg(good))
    for ch in (3, 1):
        r = _ok(_prepare(run_script, d, tmp_path/'cache', '--channels', ch))
        assert 'damaged JPEG data' in _skipped(r.stdout).get('half.jpg', ''), r.stdout
        assert 'usable: 8   skipped: 1' in r.stdout, r.stdout
        assert 'Corrupt JPEG' not in r.stderr, r.stderr             # libjpeg's own line, which names no file

@pytest.mark.parametrize('frac', [0.2, 0.5, 0.9, 0.99])
@pytest.mark.parametrize('progressive', [False, True])
def test_damaged_jpeg_read_image(tmp_path, sample, frac, progressive):
    f = sorted((sample/'train'/'malignant').glob('*.jpg'))[0]
    if progressive:
        b = io.BytesIO(); Image.open(f).save(b, 'JPEG', progressive=True, quality=90); good = b.getvalue()
    else: good = f.read_bytes()
    p = tmp_path/'cut.jpg'; p.write_bytes(_half_jpeg(good, frac))
    for ch in (1, 3):
        with pytest.raises(ImageReadError, match='damaged JPEG data'): read_image(p, 32, ch)
    p.write_bytes(good + b'trailing bytes after the image')         # junk after the end marker: the image is whole
    assert read_image(p, 32, 3).shape == (32, 32, 3)


def test_no_unnamed_decoder_lines(tmp_path, sample, run_script):
    "Damaged PNG, BMP, TIFF and WebP files: each skipped with its name; OpenCV and PIL print nothing of their own."
    d = _folder(tmp_path, sample)
    a = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    for ext in ('.png', '.bmp', '.tif', '.webp'):
        b = cv2.imencode(ext, a)[1].tobytes(); (d/'benign'/f'cut{ext}').write_bytes(b[:len(b) // 2])
    r = _ok(_prepare(run_script, d, tmp_path/'cache'))
    assert sorted(_skipped(r.stdout)) == ['cut.bmp', 'cut.png', 'cut.tif', 'cut.webp'], r.stdout
    assert r.stderr.strip() == '', r.stderr


# --------------------------------------------------------------------------------------------------------------------
# 3. Archives: extraction keyed on the archive (not its stem), under the cache folder the user chose.

def _zip_folder(path: Path, folder: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w') as z:          # data/train/{benign,malignant}/*.jpg
        for f in sorted(folder.rglob('*')): z.write(f, Path('data/train')/f.relative_to(folder))
    return path

def test_same_name_archives_not_confused(tmp_path, sample, run_script, cli_env):
    a = _zip_folder(tmp_path/'a'/'data.zip', _folder(tmp_path/'src-a', sample, 4))
    b = _zip_folder(tmp_path/'b'/'data.zip', _folder(tmp_path/'src-b', sample, 3))
    cache, home, envcache = tmp_path/'cache', tmp_path/'home', tmp_path/'envcache'
    env = {**cli_env, 'HOME': str(home), 'MELANOMA_CACHE': str(envcache)}
    r = _ok(_prepare(run_script, a, cache, env=env)); assert 'usable: 8' in r.stdout, r.stdout
    r = _ok(_prepare(run_script, b, cache, env=env))
    assert 'usable: 6' in r.stdout and 'Cache reused' not in r.stdout, r.stdout
    r = _ok(_prepare(run_script, a, cache, env=env)); assert 'usable: 8' in r.stdout and 'Cache reused' in r.stdout
    time.sleep(0.01); _zip_folder(a, _folder(tmp_path/'src-c', sample, 2))           # the same file, new contents
    r = _ok(_prepare(run_script, a, cache, env=env)); assert 'usable: 4' in r.stdout, r.stdout
    assert (cache/'extracted').is_dir() and not envcache.exists() and not home.exists()


# --------------------------------------------------------------------------------------------------------------------
# 4. Damaged, malformed and bomb archives: one line each; nothing partial left to be taken for complete.

def _bad_archive(kind: str, d: Path, good: bytes) -> tuple[Path, str]:
    "-> (archive, a phrase its error must contain)"
    members = [(f'data/{c}/{i}.jpg', good) for c in ('benign', 'malignant') for i in range(3)]
    if kind == 'truncated-tar-gz':
        p = d/'data.tar.gz'
        with tarfile.open(p, 'w:gz') as t:
            for n, b in members: ti = tarfile.TarInfo(n); ti.size = len(b); t.addfile(ti, io.BytesIO(b))
        raw = p.read_bytes(); p.write_bytes(raw[:len(raw) * 6 // 10]); return p, 'cannot be extracted'
    if kind == 'bad-crc':
        p = d/'data.zip'
        with zipfile.ZipFile(p, 'w', zipfile.ZIP_STORED) as z:
            for n, b in members: z.writestr(n, b)
        raw = bytearray(p.read_bytes()); i = raw.index(good[1000:1032]); raw[i] ^= 0xFF; p.write_bytes(bytes(raw))
        return p, 'Bad CRC'
    if kind in ('file-then-folder', 'folder-then-file'):
        p = d/'data.zip'
        clash = [('data/benign', b'a file'), ('data/benign/x.jpg', good)]
        with zipfile.ZipFile(p, 'w') as z:
            for n, b in (clash if kind == 'file-then-folder' else clash[::-1]) + members[3:]: z.writestr(n, b)
        return p, 'a file and a folder of the same name'
    if kind == 'bomb':
        p = d/'data.zip'
        with zipfile.ZipFile(p, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for n, b in members: z.writestr(n, b)
            with z.open('data/benign/big.jpg', 'w', force_zip64=True) as f:
                zero = bytes(1 << 20)
                for _ in range(300): f.write(zero)           # 300 MiB of zeros, 1.3 MB compressed
        return p, 'possible zip bomb'
    raise ValueError(kind)

@pytest.mark.parametrize('kind', ['truncated-tar-gz', 'bad-crc', 'file-then-folder', 'folder-then-file', 'bomb'])
def test_bad_archive_prepare(kind, tmp_path, sample, run_script):
    good = sorted((sample/'train'/'benign').glob('*.jpg'))[0].read_bytes()
    arch, phrase = _bad_archive(kind, tmp_path, good)
    cache = tmp_path/'cache'
    for _ in range(2):                       # the second run must fail the same way, not use a partial extraction
        r = _prepare(run_script, arch, cache)
        assert_user_error(r, 'melanoma-prepare', str(arch), phrase)
    left = [p for p in (cache/'extracted').iterdir() if not p.name.endswith('.lock')] if (cache/'extracted').exists() else []
    assert left == [], left
    assert sum(f.stat().st_size for f in cache.rglob('*') if f.is_file()) < 1 << 20

def test_unpack_limit_can_be_raised(tmp_path, sample, run_script, cli_env):
    arch = _zip_folder(tmp_path/'z'/'data.zip', _folder(tmp_path/'src', sample, 3))
    r = _prepare(run_script, arch, tmp_path/'c1', env={**cli_env, 'MELANOMA_MAX_UNPACKED': '10K'})
    assert_user_error(r, 'melanoma-prepare', str(arch), 'MELANOMA_MAX_UNPACKED', 'possible zip bomb')
    r = _ok(_prepare(run_script, arch, tmp_path/'c2', env={**cli_env, 'MELANOMA_MAX_UNPACKED': '1G'}))
    assert 'usable: 6' in r.stdout

def test_sizes_counted_while_extracting(tmp_path):
    "A member whose bytes run past what its header declared is stopped at the limit, not trusted."
    from melanoma_nb.data import _Member, _unpack
    liar = _Member('big.bin', 'file', 10, lambda: io.BytesIO(bytes(5 << 20)))
    with pytest.raises(DataError, match='its header declared less'): _unpack([liar], tmp_path, tmp_path/'dest', tmp_path/'x.zip', 1 << 20, 'test')


# --------------------------------------------------------------------------------------------------------------------
# 5. Two melanoma-prepare runs on one cache: the second waits for the first, then reuses its cache.

def _read_until(p: subprocess.Popen, needle: str, timeout: float) -> str:
    "stderr of the running `p` until `needle` appears (or it exits, or `timeout`)."
    got, end = '', time.monotonic() + timeout
    while needle not in got and time.monotonic() < end and p.poll() is None:
        if select.select([p.stderr], [], [], 0.2)[0]: got += os.read(p.stderr.fileno(), 65536).decode()
    return got

def test_second_prepare_waits_for_the_lock(tmp_path, sample, cli_env):
    import fcntl
    d, cache = _folder(tmp_path, sample), tmp_path/'cache'
    lockdir = cache_dir_for(scan(d), 32, 3, cache); lockdir.mkdir(parents=True)
    fd = os.open(lockdir/'lock', os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX)   # "another process" builds
    p = subprocess.Popen(script_cmd('melanoma-prepare') + [str(d), '--size', '32', '--cache', str(cache), '--no-progress'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env)
    try:
        err = _read_until(p, 'Waiting for another process', T)
        assert 'Waiting for another process' in err and p.poll() is None, err
        time.sleep(0.5); assert p.poll() is None                  # still waiting
    finally: os.close(fd)                                         # the other process is done
    out, rest = p.communicate(timeout=T)
    assert p.returncode == 0 and b'Traceback' not in rest, rest.decode()[-2000:]
    assert b'usable: 8' in out

def test_concurrent_prepares(tmp_path, sample, cli_env):
    "Real concurrent runs on one cache (before the lock: 'Bus error' in most trials): all succeed, one decodes."
    d = tmp_path/'data'; shutil.copytree(sample/'train', d)
    for trial in range(2):
        cache = tmp_path/f'cache{trial}'
        cmd = script_cmd('melanoma-prepare') + [str(d), '--size', '128', '--cache', str(cache), '--no-progress', '--workers', '1']
        ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env) for _ in range(2)]
        res = [p.communicate(timeout=T) for p in ps]
        for p, (out, err) in zip(ps, res):
            assert p.returncode == 0, f"trial {trial}: status {p.returncode}\n{err.decode()[-2000:]}"
            assert b'usable: 160' in out
        assert sum(b'Decoded ' in out for out, _ in res) == 1, [out.decode()[-300:] for out, _ in res]
        man = json.loads(next(cache.rglob('manifest.json')).read_text())
        assert np.load(next(cache.rglob('images.npy')), mmap_mode='r').shape == (len(man['keep']), 128, 128, 3)


# --------------------------------------------------------------------------------------------------------------------
# 6. A damaged cache is rebuilt, with a line saying why.

def test_damaged_cache_rebuilt(tmp_path, sample, run_script):
    d, cache = _folder(tmp_path, sample), tmp_path/'cache'
    _ok(_prepare(run_script, d, cache))
    npy = next(cache.rglob('images.npy'))
    damage = {'truncated': lambda: npy.write_bytes(npy.read_bytes()[:npy.stat().st_size // 2]),
              'other shape': lambda: np.save(npy, np.zeros((3, 32, 32, 3), np.uint8)),
              'other dtype': lambda: np.save(npy, np.zeros((8, 32, 32, 3), np.float32)),
              'missing': lambda: npy.unlink(),
              'not an array': lambda: npy.write_text('hello')}
    for what, do in damage.items():
        do()
        r = _ok(_prepare(run_script, d, cache))
        assert 'Rebuilding it' in r.stderr and str(npy.parent) in r.stderr, (what, r.stderr)
        assert 'Decoded 8 images' in r.stdout, (what, r.stdout)
        r = _ok(_prepare(run_script, d, cache)); assert 'Cache reused' in r.stdout, what


# --------------------------------------------------------------------------------------------------------------------
# 13. Float and 16-bit TIFFs (and PNGs), and image extensions in any case.

QUAD = np.array([[(255, 0, 0), (0, 255, 0)], [(0, 0, 255), (255, 255, 0)]], np.uint8)

def _quad(s: int = 32) -> np.ndarray:
    return np.repeat(np.repeat(QUAD, s // 2, 0), s // 2, 1)

def test_float_and_16bit_images(tmp_path, sample, run_script):
    d = _folder(tmp_path, sample)
    q = _quad(); bgr = q[..., ::-1]
    files = {'f32.tif': (bgr / 255).astype(np.float32), 'f64.tif': (bgr / 255).astype(np.float64),
             'f32-gray.tif': (q[..., 0] / 255).astype(np.float32), 'f32-0-255.tif': bgr.astype(np.float32),
             'u16.tif': bgr.astype(np.uint16) * 257, 'u16.png': bgr.astype(np.uint16) * 257,
             'f32-hdr.tif': (bgr / 100).astype(np.float32)}
    for name, a in files.items(): assert cv2.imwrite(str(d/'benign'/name), a), name
    for name in ('f32.tif', 'f64.tif', 'f32-0-255.tif', 'u16.tif', 'u16.png'):
        assert np.abs(read_image(d/'benign'/name, 32, 3).astype(int) - q).max() <= 1, name
        gray = np.rint(q @ [0.299, 0.587, 0.114])
        assert np.abs(read_image(d/'benign'/name, 32, 1)[..., 0] - gray).max() <= 1, name
    assert (read_image(d/'benign'/'f32-gray.tif', 32, 3) == q[..., :1]).all()
    r = _ok(_prepare(run_script, d, tmp_path/'cache'))
    reasons = _skipped(r.stdout)
    assert list(reasons) == ['f32-hdr.tif'] and 'float TIFF with values from 0 to 2.55: neither 0-1 nor 0-255' in reasons['f32-hdr.tif'], r.stdout
    assert 'convert it to 8-bit' in reasons['f32-hdr.tif'] and 'usable: 14' in r.stdout, r.stdout
    assert r.stderr.strip() == '', r.stderr

def test_image_extensions_in_any_case(tmp_path, sample, run_script):
    d = _folder(tmp_path, sample)
    f = sorted((d/'benign').glob('*.jpg'))[0]
    for ext in ('.JPG', '.Jpeg', '.JPEG', '.PNG', '.Tif'):
        (d/'malignant'/f'upper{ext}').write_bytes(f.read_bytes() if 'J' in ext.upper() else
                                                  cv2.imencode(ext.lower(), cv2.imread(str(f)))[1].tobytes())
    r = _ok(_prepare(run_script, d, tmp_path/'cache'))
    assert 'usable: 13   skipped: 0' in r.stdout, r.stdout


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_matches_pil(tmp_path, orientation):
    "Every EXIF orientation is turned upright exactly as PIL's exif_transpose does (JPEGs are decoded by simplejpeg)."
    a = np.zeros((24, 40, 3), np.uint8); a[:12, :20] = (255, 0, 0); a[12:, 20:] = (0, 0, 255)
    im = Image.fromarray(a); ex = im.getexif(); ex[0x0112] = orientation
    p = tmp_path/'o.jpg'; im.save(p, exif=ex, quality=95)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert('RGB'))
    got = read_image(p, 48, 3)
    ref = cv2.resize(ref, (48, 48), interpolation=cv2.INTER_LINEAR)
    assert np.abs(got.astype(int) - ref).mean() < 4, orientation


# --------------------------------------------------------------------------------------------------------------------
# melanoma-predict reads the same way: a pipe, a damaged JPEG and a dangling link named on the command line.

def test_predict_special_and_damaged(tmp_path, sample, run_script, model_file):
    good = sorted((sample/'test'/'benign').glob('*.jpg'))[0]
    os.mkfifo(tmp_path/'pipe.jpg')
    (tmp_path/'half.jpg').write_bytes(_half_jpeg(good.read_bytes()))
    (tmp_path/'loop.jpg').symlink_to('loop.jpg')
    r = _ok(run_script('melanoma-predict', '--model', model_file, good, tmp_path/'pipe.jpg', tmp_path/'half.jpg',
                       tmp_path/'loop.jpg', '--device', 'cpu', timeout=T))
    assert [json.loads(l)['path'] for l in r.stdout.splitlines()] == [str(good)]
    err = r.stderr
    assert f"{tmp_path/'pipe.jpg'}: is a named pipe" in err and f"{tmp_path/'half.jpg'}: damaged JPEG data" in err, err
    assert str(tmp_path/'loop.jpg') in err, err
    assert all(l.startswith(str(tmp_path)) for l in err.splitlines() if l.strip()), err     # every line names its file
