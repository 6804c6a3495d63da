"""melanoma_nb.data and melanoma-prepare on what users feed them: bad image files, unusual image formats, tiny and huge
images, a wrong data folder layout, unsafe archives. (Damaged, foreign and unsafe checkpoints: test_checkpoint.py.)

Each test would fail if the behaviour it names regressed. Child processes run the real console scripts."""
import io, os, shutil, stat, struct, subprocess, sys, tarfile, textwrap, zipfile, zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from melanoma_nb.data import (DataError, ImageReadError, MAX_PIXELS, build_cache, locate_data, read_image,
                              safe_extract, scan)
from conftest import assert_user_error

# --------------------------------------------------------------------------------------------------------------------
# Bad files inside a data folder: listed with their reason and skipped; the run goes on.

BAD_REASONS = {                      # file name -> a phrase its reason must contain
    'truncated.jpg': 'truncated image',                   # no end-of-image marker: named as such before decoding
    'empty.jpg': 'empty file',
    'notes.jpg': 'not a recognised image',
    'x.jpg': 'is a folder',
}

def _sample_jpgs(sample, cls, n):
    return sorted((sample/'train'/cls).glob('*.jpg'))[:n]

@pytest.fixture
def bad_folder(tmp_path, sample):
    "A split folder: 3 good images per class, plus a truncated JPEG, a 0-byte file, a text file and a folder named .jpg."
    root = tmp_path/'data'
    for cls in ('benign', 'malignant'):
        (root/cls).mkdir(parents=True)
        for f in _sample_jpgs(sample, cls, 3): shutil.copy(f, root/cls/f.name)
    good = _sample_jpgs(sample, 'benign', 4)[-1].read_bytes()
    (root/'benign'/'truncated.jpg').write_bytes(good[:len(good)//2])
    (root/'benign'/'empty.jpg').write_bytes(b'')
    (root/'malignant'/'notes.jpg').write_text('patient notes, not an image\n' * 20)
    (root/'malignant'/'x.jpg').mkdir(); (root/'malignant'/'x.jpg'/'inner.txt').write_text('a folder named like an image')
    return root

def test_bad_files_each_raise_image_read_error(bad_folder):
    for name, phrase in BAD_REASONS.items():
        path = next(bad_folder.glob(f'*/{name}'))
        with pytest.raises(ImageReadError) as ei: read_image(path, 32, 3)
        assert phrase in ei.value.reason and ei.value.path == path, (name, ei.value.reason)
        assert isinstance(ei.value, DataError) and str(path) in str(ei.value)

def test_bad_files_listed_and_skipped_by_build_cache(bad_folder, tmp_path):
    index = scan(bad_folder)
    cache = build_cache(index, size=32, channels=3, cache_dir=tmp_path/'cache', workers=2, progress=False)
    assert len(cache) == 6 and sorted(np.bincount(cache.labels).tolist()) == [3, 3]
    assert not any(Path(p).name in BAD_REASONS for p in cache.paths)
    reasons = {Path(p).name: r for p, r in cache.skipped}
    assert set(reasons) == set(BAD_REASONS), reasons
    for name, phrase in BAD_REASONS.items(): assert phrase in reasons[name], (name, reasons[name])
    report = cache.report()
    assert 'usable: 6   skipped: 4' in report
    for name in BAD_REASONS: assert f"{name}: " in report
    # the kept images are the good files, decoded (not gray padding)
    for p, img in zip(cache.paths, cache.images): assert (img == read_image(p, 32, 3)).all()
    # a second call reuses the cache and still reports the same skipped files
    again = build_cache(scan(bad_folder), size=32, channels=3, cache_dir=tmp_path/'cache', progress=False)
    assert again.reused and sorted(again.skipped) == sorted(cache.skipped)

def test_bad_files_melanoma_prepare_goes_on(bad_folder, run_script, tmp_path):
    r = run_script('melanoma-prepare', bad_folder, '--size', 32, '--cache', tmp_path/'cache', '--no-progress')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Traceback' not in r.stderr
    assert 'usable: 6   skipped: 4' in r.stdout, r.stdout
    for name, phrase in BAD_REASONS.items():
        line = [l for l in r.stdout.splitlines() if l.strip().startswith('skipped') and f'{name}: ' in l]
        assert len(line) == 1 and phrase in line[0], (name, r.stdout)

# --------------------------------------------------------------------------------------------------------------------
# Unusual but valid formats: decoded to the requested channels with the right pixel values and orientation.

# four solid quadrants: red, green / blue, yellow (RGB)
QUAD = np.array([[(255, 0, 0), (0, 255, 0)], [(0, 0, 255), (255, 255, 0)]], np.uint8)

def quad(h, w):
    "An h x w RGB image made of the four QUAD colours, one per quadrant."
    a = np.zeros((h, w, 3), np.uint8)
    a[:h//2, :w//2], a[:h//2, w//2:], a[h//2:, :w//2], a[h//2:, w//2:] = QUAD[0, 0], QUAD[0, 1], QUAD[1, 0], QUAD[1, 1]
    return a

def gray_of(rgb):
    "ITU-R BT.601 luma, as every decoder here computes it."
    return np.rint(np.asarray(rgb, np.float64) @ [0.299, 0.587, 0.114]).astype(np.int64)

def centres(img, k=4):
    "The mean pixel of a small window at the centre of each quadrant, as a 2x2(xC) int array."
    s = img.shape[0]; q = s // 4
    return np.array([[img[y-k:y+k, x-k:x+k].reshape(-1, img.shape[2]).mean(0) for x in (q, 3*q)] for y in (q, 3*q)]).round().astype(int)

def test_grayscale_png_to_1_and_3_channels(tmp_path):
    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(g, 'L').save(tmp_path/'g.png')
    one, three = read_image(tmp_path/'g.png', 16, 1), read_image(tmp_path/'g.png', 16, 3)
    assert one.shape == (16, 16, 1) and one.dtype == np.uint8 and (one[..., 0] == g).all()
    assert three.shape == (16, 16, 3) and all((three[..., c] == g).all() for c in range(3))

def test_grayscale_jpeg_to_3_channels(tmp_path):
    Image.fromarray(quad(64, 64)).convert('L').save(tmp_path/'g.jpg', quality=100)
    three = read_image(tmp_path/'g.jpg', 64, 3)
    c = centres(three)
    assert (np.abs(c - gray_of(QUAD)[..., None]) <= 2).all(), c

def test_rgba_png_keeps_colour_drops_alpha(tmp_path):
    a = quad(32, 32)
    rgba = np.dstack([a, np.full((32, 32), 77, np.uint8)])
    Image.fromarray(rgba, 'RGBA').save(tmp_path/'a.png')
    assert (read_image(tmp_path/'a.png', 32, 3) == a).all()          # RGB order, alpha ignored
    assert (np.abs(read_image(tmp_path/'a.png', 32, 1)[..., 0].astype(int) - gray_of(a)) <= 1).all()

def test_palette_png(tmp_path):
    a = quad(32, 32)
    Image.fromarray(a).convert('P').save(tmp_path/'p.png')
    assert (read_image(tmp_path/'p.png', 32, 3) == a).all()

def test_cmyk_jpeg_to_rgb(tmp_path):
    a = quad(64, 64)
    Image.fromarray(a).convert('CMYK').save(tmp_path/'c.jpg', quality=100)
    assert Image.open(tmp_path/'c.jpg').mode == 'CMYK'
    c = centres(read_image(tmp_path/'c.jpg', 64, 3))
    assert (np.abs(c - QUAD) <= 3).all(), c                          # not inverted, not channel-swapped
    g = centres(read_image(tmp_path/'c.jpg', 64, 1))[..., 0]
    assert (np.abs(g - gray_of(QUAD)) <= 3).all(), g

def test_16bit_png_scaled_to_8_bits(tmp_path):
    g8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    cv2.imwrite(str(tmp_path/'g16.png'), g8.astype(np.uint16) * 257)
    assert cv2.imread(str(tmp_path/'g16.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert (read_image(tmp_path/'g16.png', 16, 1)[..., 0] == g8).all()
    assert (read_image(tmp_path/'g16.png', 16, 3) == g8[..., None]).all()
    a = quad(16, 16)
    cv2.imwrite(str(tmp_path/'c16.png'), a[..., ::-1].astype(np.uint16) * 257)    # OpenCV writes BGR
    assert (read_image(tmp_path/'c16.png', 16, 3) == a).all()

# EXIF orientation -> how the stored pixels must be turned to show the picture upright (np.rot90's k, counter-clockwise)
ORIENTATIONS = {1: 0, 3: 2, 6: -1, 8: 1}

@pytest.mark.parametrize('orientation', sorted(ORIENTATIONS))
def test_exif_rotated_jpeg_is_turned_upright(tmp_path, orientation):
    stored = quad(48, 96)                                            # wide, so a wrong turn also changes the layout
    exif = Image.Exif(); exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path/'r.jpg', quality=100, exif=exif.tobytes())
    upright = np.rot90(stored, ORIENTATIONS[orientation])
    want = centres(cv2.resize(np.ascontiguousarray(upright), (64, 64), interpolation=cv2.INTER_NEAREST))
    got = centres(read_image(tmp_path/'r.jpg', 64, 3))
    assert (np.abs(got - want) <= 4).all(), (orientation, got.tolist(), want.tolist())
    got1 = centres(read_image(tmp_path/'r.jpg', 64, 1))[..., 0]
    assert (np.abs(got1 - gray_of(want)) <= 4).all(), (orientation, got1.tolist())

# --------------------------------------------------------------------------------------------------------------------
# A 1x1 image is resized; a 20000 x 20000 image is refused from its header, in bounded memory.

def test_one_pixel_image_is_resized(tmp_path):
    Image.fromarray(np.array([[[10, 200, 30]]], np.uint8)).save(tmp_path/'one.png')
    out = read_image(tmp_path/'one.png', 32, 3)
    assert out.shape == (32, 32, 3) and (out == [10, 200, 30]).all()
    one = read_image(tmp_path/'one.png', 32, 1).astype(int)
    assert one.shape == (32, 32, 1) and (one == one[0, 0]).all() and abs(one[0, 0, 0] - gray_of([10, 200, 30])) <= 1

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

def write_png_bomb(path: Path, w: int = 20000, h: int = 20000):
    "A valid 8-bit gray PNG of w x h zero pixels: ~0.4 MB on disk, w*h bytes decoded (x3 as RGB)."
    c, row, parts = zlib.compressobj(9), b'\0' * (w + 1), []
    rows_per_chunk = max(1, (8 << 20) // (w + 1))
    for s in range(0, h, rows_per_chunk): parts.append(c.compress(row * min(rows_per_chunk, h - s)))
    parts.append(c.flush())
    ihdr = struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', ihdr) + _png_chunk(b'IDAT', b''.join(parts)) + _png_chunk(b'IEND', b''))
    return path

def write_jpeg_bomb(path: Path, good: bytes, w: int = 20000, h: int = 20000):
    "A real JPEG whose frame header (SOF) is changed to claim w x h pixels."
    b = bytearray(good); i = 2
    while True:
        assert b[i] == 0xFF
        m, seg = b[i+1], struct.unpack('>H', b[i+2:i+4])[0]
        if m in (0xC0, 0xC1, 0xC2): b[i+5:i+9] = struct.pack('>HH', h, w); break
        i += 2 + seg
    path.write_bytes(bytes(b)); return path

@pytest.fixture(scope='module')
def bombs(tmp_path_factory, sample):
    d = tmp_path_factory.mktemp('bombs')
    good = _sample_jpgs(sample, 'benign', 1)[0].read_bytes()
    return write_png_bomb(d/'bomb.png'), write_jpeg_bomb(d/'bomb.jpg', good)

def test_bomb_is_a_real_bomb(bombs):
    "The PNG fixture really is a 20000 x 20000 image that a decoder would expand to 400 MB (gray) / 1.2 GB (RGB)."
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None     # PIL would refuse it too
    try:
        with Image.open(bombs[0]) as im: assert im.size == (20000, 20000) and im.mode == 'L'
    finally: Image.MAX_IMAGE_PIXELS = limit
    assert bombs[0].stat().st_size < 1_000_000 and 20000 * 20000 > MAX_PIXELS

@pytest.mark.parametrize('which', [0, 1], ids=['png', 'jpeg'])
def test_decompression_bomb_refused_with_a_clear_message(bombs, which):
    with pytest.raises(ImageReadError) as ei: read_image(bombs[which], 224, 3)
    msg = str(ei.value)
    assert str(bombs[which]) in msg and '20000x20000' in msg and 'decompression bomb' in msg and f'{MAX_PIXELS:,}' in msg

def test_decompression_bomb_memory_stays_bounded(bombs, cli_env):
    "In a fresh process: peak RSS grows by far less than the decoded size (1.2 GB as RGB) while both bombs are refused."
    code = textwrap.dedent(f"""
        import resource, sys
        from melanoma_nb.data import read_image, ImageReadError
        import cv2, numpy, PIL.Image, PIL.PngImagePlugin, PIL.JpegImagePlugin     # imports happen before measuring
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for p in {[str(b) for b in bombs]!r}:
            for ch in (1, 3):
                try: read_image(p, 224, ch); sys.exit('not refused: ' + p)
                except ImageReadError as e: assert 'decompression bomb' in e.reason, e
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    grew = int(r.stdout.strip().splitlines()[-1])
    assert grew < 32 * 2**20, f"peak RSS grew by {grew/2**20:.0f} MiB refusing the bombs (decoded: 400 MB gray, 1.2 GB RGB)"

def test_decompression_bomb_skipped_by_build_cache(bombs, tmp_path, sample):
    root = tmp_path/'data'
    for cls in ('benign', 'malignant'):
        (root/cls).mkdir(parents=True)
        for f in _sample_jpgs(sample, cls, 2): shutil.copy(f, root/cls/f.name)
    shutil.copy(bombs[0], root/'malignant'/'huge.png')
    cache = build_cache(scan(root), size=32, channels=3, cache_dir=tmp_path/'cache', progress=False)
    assert len(cache) == 4 and len(cache.skipped) == 1
    assert cache.skipped[0][0].endswith('huge.png') and 'decompression bomb' in cache.skipped[0][1]

# --------------------------------------------------------------------------------------------------------------------
# A data folder of the wrong shape: one clear error line naming the expected layout; exit 2; no traceback.

def _layout_case(kind: str, tmp: Path, sample: Path) -> Path:
    if kind == 'no-class-folders':                    # images directly in the folder, no benign/ malignant/
        d = tmp/'flat'; d.mkdir()
        for f in _sample_jpgs(sample, 'benign', 3) + _sample_jpgs(sample, 'malignant', 3): shutil.copy(f, d/f.name)
        return d
    if kind == 'one-class-folder':
        d = tmp/'onlybenign'; (d/'benign').mkdir(parents=True)
        for f in _sample_jpgs(sample, 'benign', 3): shutil.copy(f, d/'benign'/f.name)
        return d
    if kind == 'empty-class-folder':                  # train/malignant/ exists but holds nothing
        d = tmp/'ds'
        (d/'train'/'benign').mkdir(parents=True); (d/'train'/'malignant').mkdir()
        for f in _sample_jpgs(sample, 'benign', 3): shutil.copy(f, d/'train'/'benign'/f.name)
        return d
    if kind == 'misspelt-path':
        (tmp/'melanoma_cancer_dataset').mkdir(exist_ok=True)
        return tmp/'melanoma_cancer_datset'
    raise ValueError(kind)

LAYOUTS = {'no-class-folders': 'found 0 class folder(s)', 'one-class-folder': 'found 1 class folder(s)',
           'empty-class-folder': "class folder 'malignant' holds no images", 'misspelt-path': 'no such folder'}

@pytest.mark.parametrize('kind', list(LAYOUTS))
def test_bad_layout_library_error(kind, tmp_path, sample):
    d = _layout_case(kind, tmp_path, sample)
    with pytest.raises(DataError) as ei: scan(locate_data(d, verbose=False)[0])
    msg = str(ei.value)
    assert LAYOUTS[kind] in msg and 'benign/, malignant/' in msg and d.name in msg, msg

@pytest.mark.parametrize('kind', list(LAYOUTS))
def test_bad_layout_melanoma_prepare(kind, tmp_path, sample, run_script):
    d = _layout_case(kind, tmp_path, sample)
    r = run_script('melanoma-prepare', d, '--size', 32, '--cache', tmp_path/'cache', '--no-progress')
    assert_user_error(r, 'melanoma-prepare', LAYOUTS[kind], 'benign/, malignant/', d.name)

@pytest.mark.parametrize('kind', ['no-class-folders', 'empty-class-folder', 'misspelt-path'])
def test_bad_layout_melanoma_train(kind, tmp_path, sample, run_script):
    d = _layout_case(kind, tmp_path, sample)
    r = run_script('melanoma-train', '--data', d, '--size', 32, '--epochs', 1, '--out', tmp_path/'run',
                   '--cache', tmp_path/'cache', '--device', 'cpu', '--no-progress')
    assert_user_error(r, 'melanoma-train', LAYOUTS[kind], 'benign/, malignant/', d.name)
    assert not (tmp_path/'run'/'model.pt').exists()

# --------------------------------------------------------------------------------------------------------------------
# Archives whose members would land outside the target: refused whole; nothing written anywhere.

def _tree(d: Path) -> dict:
    "Every path under `d` with its type, size and content hash (a snapshot to compare)."
    out = {}
    for p in sorted(d.rglob('*')):
        st = p.lstat()
        out[str(p.relative_to(d))] = (stat.S_IFMT(st.st_mode), st.st_size, p.read_bytes() if p.is_file() and not p.is_symlink() else None)
    return out

def _zip(path: Path, members):
    "members: (name, bytes) or (name, bytes, 'link')"
    with zipfile.ZipFile(path, 'w') as z:
        for m in members:
            zi = zipfile.ZipInfo(m[0])
            if len(m) == 3: zi.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(zi, m[1])
    return path

def _tar(path: Path, members):
    "members: (name, bytes) or (name, target, 'symlink'|'hardlink')"
    with tarfile.open(path, 'w') as t:
        for m in members:
            ti = tarfile.TarInfo(m[0])
            if len(m) == 3:
                ti.type = tarfile.SYMTYPE if m[2] == 'symlink' else tarfile.LNKTYPE; ti.linkname = m[1]
                t.addfile(ti)
            else: ti.size = len(m[1]); t.addfile(ti, io.BytesIO(m[1]))
    return path

def _evil_members(kind: str, sandbox: Path):
    ok = ('ok.txt', b'harmless first member')              # refused archives must not write even this
    abs_target = str(sandbox/'abs_evil.txt')
    return {
        'dotdot': [ok, ('../evil.txt', b'x')],
        'nested-dotdot': [ok, ('train/benign/../../../evil.txt', b'x')],
        'absolute': [ok, (abs_target, b'x')],
        'symlink': [ok, ('link', b'..', 'link')],
        'symlink-then-file': [ok, ('link', b'..', 'link'), ('link/evil.txt', b'x')],
    }[kind]

ZIP_CASES = ['dotdot', 'nested-dotdot', 'absolute', 'symlink', 'symlink-then-file']
TAR_CASES = {
    'dotdot': lambda sb: [('ok.txt', b'x'), ('../evil.txt', b'x')],
    'nested-dotdot': lambda sb: [('ok.txt', b'x'), ('train/../../evil.txt', b'x')],
    'absolute': lambda sb: [('ok.txt', b'x'), (str(sb/'abs_evil.txt'), b'x')],
    'symlink-out': lambda sb: [('ok.txt', b'x'), ('link', str(sb), 'symlink')],
    'symlink-then-file': lambda sb: [('ok.txt', b'x'), ('link', '..', 'symlink'), ('link/evil.txt', b'x')],
    'hardlink': lambda sb: [('ok.txt', b'x'), ('hl', '/etc/passwd', 'hardlink')],
}

@pytest.fixture
def sandbox(tmp_path):
    "tmp/sandbox/dest is where the archive is extracted; tmp/sandbox (and tmp/) must not change."
    sb = tmp_path/'sandbox'; (sb/'dest').mkdir(parents=True)
    (sb/'existing.txt').write_text('must stay as it is')
    return sb

def _check_refused(archive: Path, sandbox: Path, tmp_path: Path):
    before, before_top = _tree(sandbox), _tree(tmp_path)
    with pytest.raises(DataError) as ei: safe_extract(archive, sandbox/'dest')
    msg = str(ei.value)
    assert str(archive) in msg and 'refusing to extract' in msg, msg
    assert _tree(sandbox) == before and _tree(tmp_path) == before_top
    assert list((sandbox/'dest').iterdir()) == []
    assert not (tmp_path/'evil.txt').exists() and not (sandbox/'evil.txt').exists()

@pytest.mark.parametrize('kind', ZIP_CASES)
def test_zip_escape_refused(kind, sandbox, tmp_path):
    arch = _zip(tmp_path/f'{kind}.zip', _evil_members(kind, sandbox))
    _check_refused(arch, sandbox, tmp_path)

@pytest.mark.parametrize('kind', list(TAR_CASES))
def test_tar_escape_refused(kind, sandbox, tmp_path):
    arch = _tar(tmp_path/f'{kind}.tar', TAR_CASES[kind](sandbox))
    _check_refused(arch, sandbox, tmp_path)

def test_safe_archive_extracts(sandbox, tmp_path):
    "The refusals above are specific: an ordinary archive (nested folders, a '..' inside a name) extracts."
    members = [('train/benign/a.jpg', b'1'), ('train/malignant/b..c.jpg', b'2')]
    for arch in (_zip(tmp_path/'ok.zip', members), _tar(tmp_path/'ok.tar', members)):
        d = sandbox/'dest'/arch.suffix[1:]
        safe_extract(arch, d)
        assert (d/'train/benign/a.jpg').read_bytes() == b'1' and (d/'train/malignant/b..c.jpg').read_bytes() == b'2'

def test_unsafe_archive_melanoma_prepare(tmp_path, sandbox, run_script):
    arch = _zip(tmp_path/'evil.zip', _evil_members('dotdot', sandbox) + [('train/benign/a.jpg', b'1')])
    before = _tree(sandbox)
    cache = tmp_path/'cache'
    r = run_script('melanoma-prepare', arch, '--size', 32, '--cache', cache, '--no-progress',
                   env={**os.environ, 'MELANOMA_CACHE': str(cache), 'MPLBACKEND': 'Agg'})
    assert_user_error(r, 'melanoma-prepare', 'refusing to extract', '../evil.txt', 'evil.zip')
    assert _tree(sandbox) == before and not (tmp_path/'evil.txt').exists()
    assert not list(cache.rglob('*.txt')) and not list(cache.rglob('*.jpg'))
