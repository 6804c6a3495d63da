"""Random bytes to the image loader. `read_image` either returns a (size, size, channels) uint8 array or raises
its own `ImageReadError` (a `DataError`); any other exception, or a crash, fails. Hypothesis drives 2,000 cases of
pure random bytes and 2,000 of real JPEG/PNG/BMP/TIFF/WebP files damaged the way files get damaged (bit flips, bytes
overwritten, cut short, chunks dropped or repeated, another file's header spliced in). Derandomised: every run tries
the same cases."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from melanoma_nb.data import DataError, ImageReadError, read_image, sample_root

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning:PIL')   # PIL warns about the corrupt EXIF it skips

FUZZ = settings(max_examples=2000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _seeds() -> list:
    "Real, valid image files of every format the loader accepts (from the bundled sample)."
    src = sorted((sample_root()/'train'/'malignant').glob('*.jpg'))
    small = min(src, key=lambda p: p.stat().st_size)
    rgb = cv2.imread(str(small))
    thumb = cv2.resize(rgb, (40, 40), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY)
    enc = lambda ext, img, *p: cv2.imencode(ext, img, list(p))[1].tobytes()
    return [small.read_bytes(),                                               # a real 300 x 300 JPEG
            enc('.jpg', thumb, cv2.IMWRITE_JPEG_QUALITY, 80),
            enc('.jpg', thumb, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
            enc('.jpg', gray),
            enc('.png', thumb), enc('.png', gray), enc('.png', (thumb.astype(np.uint16) * 257)),
            enc('.png', np.dstack([thumb, gray])),                            # RGBA
            enc('.bmp', thumb), enc('.tiff', thumb), enc('.webp', thumb)]

SEEDS = _seeds()


@pytest.fixture(scope='module')
def fuzz_file(tmp_path_factory):
    return tmp_path_factory.mktemp('fuzz')/'case.jpg'


def check(path: Path, data: bytes, size: int, channels: int):
    path.write_bytes(data)
    try: out = read_image(path, size, channels)
    except ImageReadError as e:                       # the loader's own, clear error
        assert isinstance(e, DataError) and e.path == path and e.reason and str(path) in str(e)
        return None
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (size, size, channels), out.shape
    return out


def test_seeds_decode(fuzz_file):
    "The undamaged seeds all decode (so the damaged cases start from real, working files)."
    for i, b in enumerate(SEEDS): assert check(fuzz_file, b, 32, 3) is not None, i


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096), size=st.sampled_from([16, 32]), channels=st.sampled_from([1, 3]),
       prefix=st.sampled_from([b'', b'\xff\xd8', b'\xff\xd8\xff\xe0', b'\xff\xd8\xff\xc0\x00\x11\x08',
                               b'\x89PNG\r\n\x1a\n', b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR', b'BM', b'II*\x00',
                               b'RIFF\x00\x00\x00\x00WEBPVP8 ', b'GIF89a']))
def test_random_bytes(fuzz_file, data, size, channels, prefix):
    "Random bytes, optionally behind a real format's magic number (so the decoders, not only the sniffing, are hit)."
    event('decoded' if check(fuzz_file, prefix + data, size, channels) is not None else 'refused (ImageReadError)')


@st.composite
def damaged(draw):
    b = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(['flip', 'overwrite', 'truncate', 'drop', 'repeat', 'splice', 'header']))
        n = len(b)
        if n == 0: break
        i = draw(st.integers(0, n - 1))
        if op == 'flip': b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 'overwrite':
            chunk = draw(st.binary(min_size=1, max_size=16)); b[i:i + len(chunk)] = chunk
        elif op == 'truncate': del b[i:]
        elif op == 'drop': del b[i:i + draw(st.integers(1, 256))]
        elif op == 'repeat': j = min(n, i + draw(st.integers(1, 256))); b[j:j] = b[i:j]
        elif op == 'splice':                          # the start of another image file followed by the rest of this one
            other = draw(st.sampled_from(SEEDS)); k = draw(st.integers(1, len(other)))
            b = bytearray(other[:k]) + b[i:]
        else:                                         # damage inside the header, where the sizes and tables live
            j = draw(st.integers(0, min(n, 200) - 1)); b[j] = draw(st.integers(0, 255))
    return bytes(b)


@FUZZ
@given(data=damaged(), size=st.sampled_from([16, 32]), channels=st.sampled_from([1, 3]))
def test_damaged_real_images(fuzz_file, data, size, channels):
    event('decoded' if check(fuzz_file, data, size, channels) is not None else 'refused (ImageReadError)')
