"""Throughput of the whole pipeline on this machine, side by side in one run, and the `cpu` preset's extrapolated time.

Run: python bench/bench_train.py [DATA_DIR] [--quick]
     (default data: ../shared/data/melanoma-dev if present, else the bundled sample)

Prints, each a median of repeats measured in this run:
  decode + resize img/s (gray and RGB, parallel, and the original notebook's serial loop),
  loader img/s (cache -> uint8 batches -> normalised, augmented float batches),
  training img/s for each preset's model and size, and for the original notebook's pipeline
  (per-image PIL decode + transforms, gray 224, batch 16, the custom CNN),
  inference img/s,
  and the `cpu` preset's wall time extrapolated to the full train split (9,605 images).
"""
import argparse, math, os, statistics, sys, tempfile, time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_decode import serial_gray, median_rate           # noqa: E402
from melanoma_nb.data import _decode_all, build_cache, sample_root, scan
from melanoma_nb.dataset import BatchTransform, CachedImages, make_loader, norm_stats
from melanoma_nb.cnn import create_model
from melanoma_nb.training import PRESETS, balanced_cross_entropy, make_optimizer

FULL_TRAIN = 9605


def train_rate(recipe, steps=6, warmup=2, channels_last=True):
    "Training images/s of the project's step (on-device transform, forward, weighted loss, backward, clip, AdamW)."
    torch.manual_seed(0)
    net = create_model(recipe.arch, in_chans=recipe.channels)
    if channels_last: net = net.to(memory_format=torch.channels_last)
    opt = make_optimizer(net, recipe)
    tf = BatchTransform(*norm_stats(recipe.channels), train=recipe.augment)
    bs = recipe.batch_size
    x = torch.randint(0, 256, (bs, recipe.channels, recipe.size, recipe.size), dtype=torch.uint8)
    y = torch.randint(0, 2, (bs,)); g = torch.Generator().manual_seed(0)
    times = []
    net.train()
    for i in range(warmup + steps):
        t = time.perf_counter()
        xb = tf(x, g)
        if channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
        loss = balanced_cross_entropy(net(xb), y, None, recipe.label_smoothing)
        loss.backward()
        if recipe.grad_clip: nn.utils.clip_grad_norm_(net.parameters(), recipe.grad_clip)
        opt.step(); opt.zero_grad(set_to_none=True)
        if i >= warmup: times.append(time.perf_counter() - t)
    return bs / statistics.median(times)


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


class OriginalStyle(torch.utils.data.Dataset):
    "The original notebook's input pipeline: per image, PIL decode -> gray -> resize 224 -> tensor -> normalise."
    def __init__(self, paths):
        import torchvision.transforms as T
        self.paths = paths
        self.tf = T.Compose([T.Grayscale(1), T.Resize((224, 224)), T.RandomHorizontalFlip(), T.ToTensor(),
                             T.Normalize([0.5], [0.5])])
    def __len__(self): return len(self.paths)
    def __getitem__(self, i):
        from PIL import Image
        with Image.open(self.paths[i]) as im: return self.tf(im.convert('RGB')), 0


def original_rate(paths, steps=5, warmup=1):
    "The original notebook's loop: its CNN, gray 224, batch 16, Adam 1e-3, per-item PIL transforms in a DataLoader."
    torch.manual_seed(0)
    net = create_model('cnn', in_chans=1); opt = torch.optim.Adam(net.parameters(), 1e-3)
    dl = torch.utils.data.DataLoader(OriginalStyle(paths), batch_size=16, shuffle=True, num_workers=0)
    times, it = [], iter(dl)
    net.train()
    for i in range(warmup + steps):
        t = time.perf_counter()
        x, _ = next(it); y = torch.randint(0, 2, (len(x),))
        loss = F.cross_entropy(net(x), y); opt.zero_grad(); loss.backward(); opt.step()
        if i >= warmup: times.append(time.perf_counter() - t)
    return 16 / statistics.median(times)


def loader_rate(cache, bs=64):
    tf = BatchTransform(*norm_stats(cache.channels), train=True); g = torch.Generator().manual_seed(0)
    dl = make_loader(CachedImages(cache.images, cache.labels), bs, shuffle=True)
    def run():
        for xb, yb in dl: tf(xb, g)
    return median_rate(run, len(cache), 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
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

    print("\ntraining (images/s; the step of fit(): on-device transform, forward, loss, backward, clip, AdamW)")
    rows = {}
    for name in ('default', 'cpu', 'gpu', 'seed'):
        r = PRESETS[name]
        rows[name] = train_rate(r, steps=3 if a.quick else 6)
        print(f"  preset {name:8s} {r.arch:9s} {r.channels}ch {r.size:3d}px batch {r.batch_size:3d}: {rows[name]:8.1f}")
    orig = original_rate(idx.paths, steps=3 if a.quick else 5)
    print(f"  original notebook pipeline (PIL per image, cnn, gray 224, batch 16): {orig:8.1f}")
    print(f"  preset seed (same model and size, cached uint8 + on-device transform) vs original: {rows['seed']/orig:.2f}x")

    print("\ninference (images/s, batch 64)")
    inf = {}
    for name in ('default', 'cpu', 'gpu'):
        r = PRESETS[name]; inf[name] = infer_rate(r)
        print(f"  preset {name:8s} {r.arch:9s} {r.size:3d}px: {inf[name]:8.1f}")

    n_tr = round(FULL_TRAIN * (1 - cpu.val_frac)); n_va = FULL_TRAIN - n_tr
    t_dec = FULL_TRAIN / cpu_decode
    t_ep = n_tr / rows['cpu'] + n_va / inf['cpu']
    total = t_dec + cpu.epochs * t_ep
    print(f"\n`cpu` preset on the full train split ({FULL_TRAIN:,} images: {n_tr:,} train + {n_va:,} validation), extrapolated:")
    print(f"  decode once {t_dec:6.0f} s + {cpu.epochs} epochs x {t_ep:5.0f} s = {total:6.0f} s ({total/60:.1f} min; budget 15 min)")


if __name__ == '__main__': main()
