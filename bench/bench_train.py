"""Throughput of the whole pipeline on this machine, side by side in one run, and the `cpu` preset's extrapolated time.

Run: python bench/bench_train.py [DATA_DIR] [--quick]
     (default data: ../shared/data/melanoma-dev if present, else the bundled sample)

Prints, each a median of repeats measured in this run:
  decode + resize img/s (gray and RGB, parallel, and the original notebook's serial loop),
  loader img/s (cache -> uint8 batches -> normalised, augmented float batches),
  training img/s of the library's step (`Trainer.time_steps`, i.e. `Trainer.one_batch`, on random uint8 batches of
  each preset's model, size, channels and batch; fp32, and for the `cpu` preset also bf16 autocast), and of the
  original notebook's pipeline (per-image PIL decode + transforms, then the library's step with the original's recipe:
  PRESETS['seed'] with an unweighted loss; loading timed with the step),
  inference img/s,
  and the `cpu` preset's wall time extrapolated to the full train split (9,605 images) in the precision a run would
  pick here (bf16 when its step takes <= BF16_GAIN of fp32's, as `Trainer.set_precision` decides).
"""
import argparse, math, os, statistics, sys, tempfile, time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import serial_gray, median_rate           # noqa: E402
from melanoma_nb.data import _decode_all, build_cache, sample_root, scan
from melanoma_nb.dataset import BatchTransform, CachedImages, make_loader, norm_stats
from melanoma_nb.cnn import create_model
from melanoma_nb.training import BF16_GAIN, PRESETS
from _common import OriginalStyle, synthetic_cache, trainer   # noqa: E402

FULL_TRAIN = 9605


def train_rate(recipe, steps=6, precision='fp32'):
    "Training images/s of the library's step (`Trainer.time_steps`: one untimed step, then the median of `steps`) for `recipe`."
    t = trainer(recipe.update(precision=precision))
    return recipe.batch_size / statistics.median(t.time_steps(steps, precision))


@torch.inference_mode()
def infer_rate(recipe, bs=64, steps=5):
    net = create_model(recipe.arch, in_chans=recipe.channels).eval()
    tf = BatchTransform(*norm_stats(recipe.channels))
    x = torch.randint(0, 256, (bs, recipe.channels, recipe.size, recipe.size), dtype=torch.uint8)
    net(tf(x))
    times = []
    for _ in range(steps):
        t = time.perf_counter(); net(tf(x)); times.append(time.perf_counter() - t)
    return bs / statistics.median(times)


def original_rate(idx, steps=5, warmup=1):
    """The original notebook's recipe (PRESETS['seed']: its CNN, gray 224, batch 16, Adam-like AdamW without decay at
    1e-3, unweighted loss) in the library's step, fed by the original's per-image PIL pipeline; loading is timed too."""
    r = PRESETS['seed'].update(balance='none', precision='fp32')
    t = trainer(r, synthetic_cache(2 * r.batch_size, r.size, r.channels))   # the cache only gives the Trainer its shape
    dl = torch.utils.data.DataLoader(OriginalStyle(idx.paths, idx.labels, r.size), batch_size=r.batch_size, shuffle=True, num_workers=0)
    times, it, g = [], iter(dl), torch.Generator().manual_seed(0)
    for i in range(warmup + steps):
        tt = time.perf_counter()
        try: x, y = next(it)
        except StopIteration: it = iter(dl); x, y = next(it)
        t.one_batch(x, y, g)
        if i >= warmup: times.append(time.perf_counter() - tt)
    return r.batch_size / statistics.median(times)


def loader_rate(cache, bs=64):
    tf = BatchTransform(*norm_stats(cache.channels), train=True); g = torch.Generator().manual_seed(0)
    dl = make_loader(CachedImages(cache.images, cache.labels), bs, shuffle=True)
    def run():
        for xb, yb in dl: tf(xb, g)
    return median_rate(run, len(cache), 3)


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n')[0])
    ap.add_argument('data', nargs='?'); ap.add_argument('--quick', action='store_true', help='fewer repeats')
    a = ap.parse_args()
    dev = Path(__file__).resolve().parents[2]/'shared'/'data'/'melanoma-dev'
    root = Path(a.data) if a.data else (dev if dev.is_dir() else sample_root())
    idx = scan(root); n = len(idx)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"OpenCV {cv2.__version__}; data: {root} ({n} images)\n")
    for p in idx.paths: p.read_bytes()

    print("decode + resize (images/s)")
    s = median_rate(lambda: serial_gray(idx.paths), n, 3)
    print(f"  {'original serial loop, gray 224':44s} {s:8,.0f}")
    rates = {}
    for ch in (1, 3):
        buf = np.empty((n, 224, 224, ch), np.uint8)
        rates[ch] = median_rate(lambda: _decode_all(idx.paths, buf, 224, ch, os.cpu_count(), False), n, 3)
        print(f"  {'melanoma_nb parallel, ' + ('gray' if ch == 1 else 'RGB') + ' 224':44s} {rates[ch]:8,.0f}   ({rates[ch]/s:.2f}x serial)")

    cpu = PRESETS['cpu']
    with tempfile.TemporaryDirectory() as d:
        cache = build_cache(idx, cpu.size, cpu.channels, cache_dir=d, progress=False)
        t = time.perf_counter(); build_cache(idx, cpu.size, cpu.channels, cache_dir=tempfile.mkdtemp(dir=d), progress=False)
        cpu_decode = n / (time.perf_counter() - t)
        print(f"\nloader: cache -> batches of 64 -> on-device augment + normalise, {cpu.size} px RGB: "
              f"{loader_rate(cache):8,.0f} images/s")

    print("\ntraining (images/s; the library's step, Trainer.time_steps: on-device transform, forward, loss, backward, clip, AdamW)")
    rows = {}
    for name in ('default', 'cpu', 'gpu', 'seed'):
        r = PRESETS[name]
        rows[name] = train_rate(r, steps=3 if a.quick else 6)
        print(f"  preset {name:8s} {r.arch:11s} {r.channels}ch {r.size:3d}px batch {r.batch_size:3d} fp32: {rows[name]:8.1f}")
    cpu_bf16 = train_rate(cpu, steps=3 if a.quick else 6, precision='bf16')
    ratio = rows['cpu'] / cpu_bf16                     # bf16 step time / fp32 step time
    cpu_prec = 'bf16' if ratio <= BF16_GAIN else 'fp32'
    print(f"  preset {'cpu':8s} {cpu.arch:11s} {cpu.channels}ch {cpu.size:3d}px batch {cpu.batch_size:3d} bf16: {cpu_bf16:8.1f}"
          f"   (step time bf16/fp32 {ratio:.2f}: a run here trains in {cpu_prec})")
    orig = original_rate(idx, steps=3 if a.quick else 5)
    print(f"  original notebook pipeline (PIL per image, cnn, gray 224, batch 16): {orig:8.1f}")
    print(f"  preset seed (same model and size, cached uint8 + on-device transform) vs original: {rows['seed']/orig:.2f}x")

    print("\ninference (images/s, batch 64)")
    inf = {}
    for name in ('default', 'cpu', 'gpu'):
        r = PRESETS[name]; inf[name] = infer_rate(r)
        print(f"  preset {name:8s} {r.arch:11s} {r.size:3d}px: {inf[name]:8.1f}")

    n_tr = round(FULL_TRAIN * (1 - cpu.val_frac)); n_va = FULL_TRAIN - n_tr
    t_dec = FULL_TRAIN / cpu_decode
    t_ep = n_tr / (cpu_bf16 if cpu_prec == 'bf16' else rows['cpu']) + n_va / inf['cpu']
    total = t_dec + cpu.epochs * t_ep
    print(f"\n`cpu` preset on the full train split ({FULL_TRAIN:,} images: {n_tr:,} train + {n_va:,} validation), {cpu_prec}, extrapolated:")
    print(f"  decode once {t_dec:6.0f} s + {cpu.epochs} epochs x {t_ep:5.0f} s = {total:6.0f} s ({total/60:.1f} min; budget 15 min)")


if __name__ == '__main__': main()
