"""Decode + resize throughput: the project's parallel cache builder against the original notebook's serial loop.

Run: python bench/bench_decode.py [DATA_DIR]   (default: ../shared/data/melanoma-dev if present, else the bundled sample)
Prints images/s (median of repeats) side by side, measured in the same run, and the time of a cache reuse.
"""
import os, statistics, sys, tempfile, time
from pathlib import Path

import cv2
import numpy as np

from melanoma_nb.data import _decode_all, build_cache, sample_root, scan


def median_rate(fn, n, repeats=5):
    rates = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def serial_gray(paths, size=224):
    "The original notebook's processor: cv2.imread(..., IMREAD_GRAYSCALE) + cv2.resize, one image after another."
    out = []
    for p in paths: out.append(cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (size, size)))
    return np.stack(out)


def main():
    dev = Path(__file__).resolve().parents[2]/'shared'/'data'/'melanoma-dev'
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else (dev if dev.is_dir() else sample_root())
    idx = scan(root); paths, n = idx.paths, len(idx)
    workers = os.cpu_count()
    print(f"data: {root} ({n} images), {workers} cores, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)")
    for p in paths: p.read_bytes()                       # warm the page cache so every contender reads from memory
    rows = []
    s = median_rate(lambda: serial_gray(paths), n)
    for size, ch in [(224, 1), (224, 3)]:
        buf = np.empty((n, size, size, ch), np.uint8)
        par = median_rate(lambda: _decode_all(paths, buf, size, ch, workers, False), n)
        rows.append((f"parallel decode, {'gray' if ch == 1 else 'RGB'} {size}", par))
        with tempfile.TemporaryDirectory() as d:
            full = median_rate(lambda: build_cache(idx, size, ch, cache_dir=tempfile.mkdtemp(dir=d), progress=False), n, 3)
            rows.append((f"build_cache (decode + write .npy), {'gray' if ch == 1 else 'RGB'} {size}", full))
            build_cache(idx, size, ch, cache_dir=d, progress=False)
            t = time.perf_counter(); c = build_cache(idx, size, ch, cache_dir=d, progress=False); reuse = time.perf_counter() - t
            assert c.reused
    print(f"{'serial cv2.imread(GRAYSCALE) + cv2.resize, gray 224':58s} {s:8,.0f} img/s   1.00x")
    for name, r in rows: print(f"{name:58s} {r:8,.0f} img/s   {r/s:.2f}x serial gray")
    print(f"{'cache reuse, unchanged inputs (scan + stat + open)':58s} {reuse*1000:8.1f} ms")


if __name__ == '__main__': main()
