"""melanoma_nb.data and melanoma-prepare against hostile or careless inputs (issue 25, kinds A-E, G-J): each test failed
on the code before the fix."""
import bz2, io, os, shutil, signal, struct, subprocess, sys, tarfile, time, zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, script_cmd
from melanoma_nb.data import DataError, ImageReadError, read_image, safe_extract, sample_root, scan, prepare

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='POSIX file names, signals and permissions')
T = 120


def _folder(top: Path, n: int = 3, root: bool = True) -> Path:
    "A data set root (train/{benign,malignant}) or a split folder with `n` sample images per class."
    d = top/'data'
    for cls in ('benign', 'malignant'):
        (d/'train'/cls if root else d/cls).mkdir(parents=True)
        for f in sorted((sample_root()/'train'/cls).glob('*.jpg'))[:n]: shutil.copy(f, (d/'train'/cls if root else d/cls)/f.name)
    return d


def _jpeg() -> bytes: return sorted((sample_root()/'train'/'benign').glob('*.jpg'))[0].read_bytes()


def _prepare(run_script, data, cache, *args, env=None):
    return run_script('melanoma-prepare', data, '--size', 32, '--cache', cache, '--no-progress', *args, timeout=T, env=env)


def _tiff(w_tags, h_tags) -> bytes:
    "An 8-bit gray TIFF whose width and height tags appear once per value given; its strip: 1 MiB of zeros, deflated."
    data = zlib.compress(bytes(2**20), 9)
    tags = [(256, 4, w) for w in w_tags] + [(257, 4, h) for h in h_tags] + [(258, 3, 8), (259, 3, 8), (262, 3, 1),
                                                                           (273, 4, 0), (277, 3, 1), (279, 4, len(data))]
    ifd_len = 2 + 12 * len(tags) + 4
    tags = [(t, ty, 8 + ifd_len if t == 273 else v) for t, ty, v in tags]
    ifd = struct.pack('<H', len(tags)) + b''.join(struct.pack('<HHII', t, ty, 1, v) for t, ty, v in tags) + b'\0' * 4
    return b'II*\0' + struct.pack('<I', 8) + ifd + data


# A. a decompression bomb whose header contradicts itself
@pytest.mark.parametrize('w_tags,h_tags', [((20000, 100), (20000, 100)), ((100, 20000), (20000,)), ((20000,), (100, 20000))])
def test_contradictory_tiff_refused(tmp_path, w_tags, h_tags):
    f = tmp_path/'bomb.tif'; f.write_bytes(_tiff(w_tags, h_tags))
    with pytest.raises(ImageReadError) as ei: read_image(f, 32)
    assert 'given twice' in ei.value.reason


def test_tiff_bomb_prepare_low_memory(tmp_path, run_script):
    d = _folder(tmp_path); (d/'train'/'benign'/'bomb.tif').write_bytes(_tiff((20000, 100), (20000, 100)))
    r = subprocess.run(['/usr/bin/time', '-f', '%M'] + script_cmd('melanoma-prepare') + [str(d), '--size', '32', '--cache',
                       str(tmp_path/'c'), '--no-progress'], capture_output=True, text=True, timeout=T)
    assert r.returncode == 0 and 'bomb.tif' in r.stdout and 'given twice' in r.stdout, r.stderr[-2000:]
    assert int(r.stderr.strip().splitlines()[-1]) < 1_000_000, 'over 1 GB of memory'      # KB


def test_opencv_refuses_from_its_own_header(tmp_path):
    "The decoder's own limit holds too (set before OpenCV is imported): here with a limit of 1,000 pixels, in a new process."
    f = tmp_path/'x.bmp'
    import cv2
    f.write_bytes(cv2.imencode('.bmp', np.zeros((100, 100, 3), np.uint8))[1].tobytes())
    code = ("import melanoma_nb.data, cv2, numpy as np, sys; b = np.fromfile(sys.argv[1], np.uint8)\n"
            "try: print(cv2.imdecode(b, 1) is None)\nexcept cv2.error: print('refused')")
    r = subprocess.run([sys.executable, '-c', code, f], capture_output=True, text=True, timeout=T,
                       env={**{k: v for k, v in os.environ.items() if k != 'OPENCV_IO_MAX_IMAGE_PIXELS'}, 'MELANOMA_MAX_PIXELS': '1000'})
    assert r.stdout.strip() in ('True', 'refused'), r.stdout + r.stderr


# B. compressed tars: each header is checked before its data is decompressed
def _bz2_tar_declaring(size: int) -> bytes:
    ti = tarfile.TarInfo('data/train/benign/big.jpg'); ti.size = size
    c = bz2.BZ2Compressor(9)
    out = c.compress(ti.tobuf(format=tarfile.GNU_FORMAT))
    for _ in range(64): out += c.compress(bytes(2**24))          # 1 GiB of zeros: a few hundred bytes
    return out + c.flush()


def test_bz2_tar_bomb_refused_at_once(tmp_path, run_script):
    a = tmp_path/'bomb.tar.bz2'; a.write_bytes(_bz2_tar_declaring(64 * 2**30))
    t0 = time.monotonic()
    r = run_script('melanoma-prepare', a, '--cache', tmp_path/'c', '--no-progress', timeout=T)
    assert_user_error(r, 'melanoma-prepare', 'zip bomb')
    assert time.monotonic() - t0 < 30


def test_tar_cut_at_a_member_boundary_refused(tmp_path):
    d = _folder(tmp_path, n=5)
    with tarfile.open(tmp_path/'a.tar', 'w') as t: t.add(d, arcname='data')
    with tarfile.open(tmp_path/'a.tar') as t: cut = t.getmembers()[-3].offset
    (tmp_path/'cut.tar').write_bytes((tmp_path/'a.tar').read_bytes()[:cut])
    with pytest.raises(DataError, match='end-of-archive'): safe_extract(tmp_path/'cut.tar', tmp_path/'out')
    assert len(list(safe_extract(tmp_path/'a.tar', tmp_path/'ok').rglob('*.jpg'))) == 10   # the whole one is fine


@pytest.mark.parametrize('mode', ['w:gz', 'w:bz2', 'w:xz'])
def test_compressed_tars_still_extract(tmp_path, mode):
    d = _folder(tmp_path, n=2)
    with tarfile.open(tmp_path/'a.tar.x', mode) as t: t.add(d, arcname='data')
    assert len(list(safe_extract(tmp_path/'a.tar.x', tmp_path/'out').rglob('*.jpg'))) == 4


# C. no whole-file read without a cap
def test_huge_file_not_read(tmp_path, run_script):
    d = _folder(tmp_path)
    with open(d/'train'/'benign'/'huge.png', 'wb') as f: f.write(_jpeg()); f.truncate(3 * 2**30)   # sparse: no disk used
    r = subprocess.run(['/usr/bin/time', '-f', '%M'] + script_cmd('melanoma-prepare') + [str(d), '--size', '32', '--cache',
                       str(tmp_path/'c'), '--no-progress'], capture_output=True, text=True, timeout=T)
    assert r.returncode == 0 and 'huge.png' in r.stdout and 'over the limit' in r.stdout, r.stderr[-2000:]
    assert int(r.stderr.strip().splitlines()[-1]) < 1_000_000


# D. an unreadable class folder, for a user without root's capabilities
def _without_dac() -> list:
    "A prefix that runs a command without the capabilities that let root read any folder (nothing when not root)."
    if os.geteuid() != 0: return []
    if shutil.which('setpriv') is None: pytest.skip('needs setpriv (util-linux) to drop root\'s capabilities')
    return ['setpriv', '--bounding-set', '-dac_override,-dac_read_search']


@pytest.mark.parametrize('where', ['train/malignant', 'train/benign', 'train'])
def test_unreadable_folder_under_a_root(tmp_path, where, cli_env):
    d = _folder(tmp_path)
    (d/where).chmod(0)
    try:
        r = subprocess.run(_without_dac() + script_cmd('melanoma-prepare') + [str(d), '--size', '32', '--cache',
                           str(tmp_path/'c'), '--no-progress'], capture_output=True, text=True, timeout=T, env=cli_env)
        assert_user_error(r, 'melanoma-prepare', 'Permission denied' if where != 'train' else str(d))
    finally: (d/where).chmod(0o755)


# E. file names that are not UTF-8, with a strict UTF-8 stdout
def test_non_utf8_name_listed_with_strict_stdout(tmp_path, run_script, cli_env):
    d = _folder(tmp_path)
    bad = os.fsencode(d/'train'/'benign') + b'/caf\xe9.txt'
    with open(bad, 'wb') as f: f.write(b'x')
    with open(os.fsencode(d/'train'/'benign') + b'/\xff\xfe.jpg', 'wb') as f: f.write(_jpeg())
    r = _prepare(run_script, d, tmp_path/'c', env={**cli_env, 'PYTHONIOENCODING': 'utf-8:strict'})
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert 'usable: 7' in r.stdout and 'caf' in r.stdout


# G. silent drops and wrong reads
def test_jpeg_with_a_trailer(tmp_path):
    f = tmp_path/'motion.jpg'; f.write_bytes(_jpeg() + b'\0\0\0\x18ftypmp42' + os.urandom(64 * 1024))
    assert read_image(f, 32).shape == (32, 32, 3)
    f.write_bytes(_jpeg()[:len(_jpeg()) // 2])                    # cut short: still refused
    with pytest.raises(ImageReadError, match='truncated|damaged'): read_image(f, 32)


def _with_orientation(buf: bytes, orient: int, xmp_after: bool) -> bytes:
    "A JPEG with an EXIF APP1 carrying `orient`, then (optionally) an XMP APP1, inserted after SOI."
    tiff = b'MM\0*' + struct.pack('>I', 8) + struct.pack('>H', 1) + struct.pack('>HHIHH', 0x0112, 3, 1, orient, 0) + b'\0' * 4
    exif = b'Exif\0\0' + tiff
    seg = b'\xff\xe1' + struct.pack('>H', len(exif) + 2) + exif
    if xmp_after:
        xmp = b'http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>'
        seg += b'\xff\xe1' + struct.pack('>H', len(xmp) + 2) + xmp
    return buf[:2] + seg + buf[2:]


def test_exif_orientation_with_xmp_after_it(tmp_path):
    import cv2
    img = np.zeros((40, 80, 3), np.uint8); img[:, :40] = 255        # wide: white on the left
    buf = cv2.imencode('.jpg', img)[1].tobytes()
    (tmp_path/'a.jpg').write_bytes(_with_orientation(buf, 6, False))
    (tmp_path/'b.jpg').write_bytes(_with_orientation(buf, 6, True))
    a, b = read_image(tmp_path/'a.jpg', 32), read_image(tmp_path/'b.jpg', 32)
    assert a[:4].mean() > 200 and a[-4:].mean() < 50                # turned: white at the top
    np.testing.assert_array_equal(a, b)


def test_images_beside_class_folders_listed(tmp_path):
    d = _folder(tmp_path)
    shutil.copy(sample_root()/'train'/'benign'/sorted(os.listdir(sample_root()/'train'/'benign'))[0], d/'x.jpg')
    shutil.copy(d/'x.jpg', d/'train'/'y.jpg')
    (d/'README.md').write_text('notes')
    skipped = dict(scan(d).skipped)
    assert 'beside train/ and test/' in skipped[str(d/'x.jpg')] and 'beside the class folders' in skipped[str(d/'train'/'y.jpg')]
    assert str(d/'README.md') not in skipped


# H. a damaged cache manifest
@pytest.mark.parametrize('bad', ['folder', '{"keep": "x", "skipped": 3}', '{"keep": [[1, 2]], "skipped": [[1, 2, 3]]}'])
def test_damaged_manifest_rebuilt(tmp_path, bad, capsys):
    d = _folder(tmp_path)
    c = prepare(d, size=32, cache_dir=tmp_path/'c', progress=False, verbose=False)
    m = Path(c.dir)/'manifest.json'
    man = __import__('json').loads(m.read_text())
    m.unlink()
    if bad == 'folder': m.mkdir(); (m/'x').write_text('x')
    else: m.write_text(__import__('json').dumps({**man, **__import__('json').loads(bad)}))
    c2 = prepare(d, size=32, cache_dir=tmp_path/'c', progress=False, verbose=False)
    assert len(c2) == 6 and not c2.reused


# I. SIGTERM during prepare: 130, as documented
def test_sigterm_during_prepare(tmp_path, cli_env):
    d = _folder(tmp_path, n=1)
    for k in range(300): shutil.copy(next((d/'train'/'benign').glob('*.jpg')), d/'train'/'benign'/f'c{k}.jpg')
    p = subprocess.Popen(script_cmd('melanoma-prepare') + [str(d), '--size', '256', '--cache', str(tmp_path/'c'), '--workers', '1',
                         '--no-progress'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env)
    time.sleep(2.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=T)
    assert p.returncode in (0, 130), (p.returncode, err[-2000:])    # 0 only if it finished first
    if p.returncode == 130: assert 'interrupted' in err and 'Traceback' not in err


# J. folders that are not classes
def test_macosx_and_cache_folders_not_classes(tmp_path, run_script):
    d = _folder(tmp_path)
    (d/'train'/'__MACOSX'/'benign').mkdir(parents=True)
    shutil.copy(next((d/'train'/'benign').glob('*.jpg')), d/'train'/'__MACOSX'/'benign'/'._a.jpg')
    shutil.copy(next((d/'train'/'benign').glob('*.jpg')), d/'train'/'__MACOSX'/'a.jpg')
    r = _prepare(run_script, d, d/'train'/'cache')                    # a cache inside the data folder, run twice
    r = _prepare(run_script, d, d/'train'/'cache')
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'benign: 3  malignant: 3' in r.stdout and '__MACOSX' in r.stdout and 'cache folder' in r.stdout, r.stdout


def test_is_a_directory_does_not_advise_free_space(tmp_path):
    from melanoma_nb.data import _cache_write_error
    e = _cache_write_error(tmp_path, IsADirectoryError(21, 'Is a directory', str(tmp_path/'x')))
    assert 'Free some disk space' not in str(e) and 'in the way' in str(e)
    assert 'Free some disk space' in str(_cache_write_error(tmp_path, OSError(28, 'No space left on device')))


def test_broken_icc_profile_is_not_damage(tmp_path):
    "A JPEG whose ICC colour profile marker is malformed has intact pixels: it is read, not skipped as damaged."
    p = b'ICC_PROFILE\0' + bytes(100)                                  # sequence number 0 of 0: libjpeg says 'bad ICC marker'
    buf = _jpeg()
    (tmp_path/'icc.jpg').write_bytes(buf[:2] + b'\xff\xe2' + struct.pack('>H', len(p) + 2) + p + buf[2:])
    np.testing.assert_array_equal(read_image(tmp_path/'icc.jpg', 32), read_image(sample_root()/'train'/'benign'/sorted(
        os.listdir(sample_root()/'train'/'benign'))[0], 32))
