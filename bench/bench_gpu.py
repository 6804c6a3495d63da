"""GPU throughput: this project's training loop against a loop built like the original notebook's, on the same GPU.

Run on a CUDA machine: python bench/bench_gpu.py [DATA_DIR] [--compile] [--quick]
(default data: ../shared/data/melanoma-dev or .devdata/melanoma-dev if present, else the bundled sample; the images
are repeated to 4,000 so that epochs are long enough to time.) BENCH_DEVICE=cpu runs it on the CPU, only to check the
script itself (with --quick and a small BENCH_REPEAT_TO).

Prints images/s for ResNet-18 at 224x224 (3 channels, from scratch):
  - melanoma_nb's fit(): uint8 images on the GPU once, on-device augmentation, precision timed at the start (bf16
    autocast when faster), channels_last, fused AdamW (end to end per epoch, validation included, timed by an
    `after_epoch` callback);
  - the training steps alone: `Trainer.one_batch` in bf16 over the Trainer's on-GPU batches;
  - the original notebook's style: a DataLoader of per-image PIL decode + transforms, batch 16, gray input through a
    1-channel conv1, feeding the library's step (`Trainer.one_batch`) with the original's recipe: fp32, AdamW without
    weight decay (= Adam) at 1e-3, constant rate, unweighted cross-entropy, no smoothing, no clipping. Since the step
    is the library's, it normalises on the GPU and runs channels_last with fused AdamW (the original normalised on
    the CPU, in NCHW, with the default Adam); what the ratio measures is mostly the input pipeline, batch and precision.
"""
import argparse, os, statistics, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from melanoma_nb.data import ImageCache, prepare, sample_root, scan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OriginalStyle, synthetic_cache, trainer   # noqa: E402
from melanoma_nb.training import PRESETS, Callback, Recipe, fit

REPEAT_TO = int(os.environ.get('BENCH_REPEAT_TO', 4000))
DEV = os.environ.get('BENCH_DEVICE', 'cuda')   # 'cpu' only to check the script itself


def repeated(cache, n):
    "`cache`'s images repeated (or, for n below its size, evenly subsampled) to `n`, all in train/."
    idx = np.arange(n) % len(cache) if n >= len(cache) else np.arange(n) * len(cache) // n
    return ImageCache(np.asarray(cache.images)[idx], np.asarray(cache.labels)[idx], np.array(['train'] * n),
                      [cache.paths[i] for i in idx], cache.classes, cache.size, cache.channels, [], cache.root, 'split', 'bench')


def sync():
    if DEV == 'cuda': torch.cuda.synchronize()


class EpochStamps(Callback):
    "The time at the end of each epoch (device synchronised)."
    def __init__(self): self.stamps = []
    def after_epoch(self, t): sync(); self.stamps.append(time.perf_counter())


def project_rate(cache, compile_=False, epochs=4):
    r = replace(PRESETS['gpu'], pretrained=False, weights=None, freeze_epochs=0, epochs=epochs, compile=compile_)
    cb = EpochStamps()
    res = fit(r, cache, device=DEV, progress=False, verbose=False, cbs=[cb])
    n_tr = res.metrics['n_train']; n_va = res.metrics['n_val']
    per_epoch = statistics.median(np.diff(cb.stamps))      # epochs 2..: warm-up (cudnn autotune, compile) excluded
    return (n_tr + n_va) / per_epoch, n_tr, n_va, per_epoch, r, res.metrics['precision']


def step_rate(cache, steps=40, warmup=10):
    "The training step alone (`Trainer.one_batch`, bf16, the gpu preset's recipe) over the Trainer's batches, to separate it from validation."
    r = replace(PRESETS['gpu'], precision='bf16')
    t = trainer(r, cache, device=DEV)
    g = torch.Generator(device=t.dev).manual_seed(0)
    it = iter(t.train_b)
    def one():
        nonlocal it
        try: xb, yb = next(it)
        except StopIteration: it = iter(t.train_b); xb, yb = next(it)
        t.one_batch(xb, yb, g)
    for _ in range(warmup): one()
    sync(); t0 = time.perf_counter()
    for _ in range(steps): one()
    sync()
    return steps * r.batch_size / (time.perf_counter() - t0)


ORIGINAL = Recipe(arch='resnet18', channels=1, size=224, batch_size=16, lr=1e-3, weight_decay=0.0, label_smoothing=0.0,
                  augment=False, schedule='constant', grad_clip=None, balance='none', precision='fp32')


def original_rate(paths, workers, steps=60, warmup=5):
    "The original notebook's data loading (PIL per item) feeding the library's step with the original's recipe."
    t = trainer(ORIGINAL, synthetic_cache(2 * ORIGINAL.batch_size, ORIGINAL.size, ORIGINAL.channels), device=DEV)
    g = torch.Generator(device=t.dev).manual_seed(0)
    dl = torch.utils.data.DataLoader(OriginalStyle(paths, size=ORIGINAL.size), batch_size=ORIGINAL.batch_size,
                                     shuffle=True, num_workers=workers)
    n, k, t0 = 0, 0, None
    while True:
        for x, y in dl:
            t.one_batch(x, y, g)
            k += 1
            if k == warmup: sync(); t0 = time.perf_counter(); continue
            if t0 is not None: n += len(x)
            if n >= steps * ORIGINAL.batch_size:
                sync(); return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n')[0])
    ap.add_argument('data', nargs='?'); ap.add_argument('--compile', action='store_true')
    ap.add_argument('--quick', action='store_true', help='2 epochs and a few steps (a check of the script, not a measurement)')
    a = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    cands = [Path(a.data)] if a.data else [here.parent/'shared'/'data'/'melanoma-dev', here/'.devdata'/'melanoma-dev', sample_root()]
    root = next(c for c in cands if c.is_dir())
    assert DEV != 'cuda' or torch.cuda.is_available(), 'this benchmark needs a CUDA GPU (or BENCH_DEVICE=cpu to check the script)'
    epochs, steps, warm = (2, 3, 1) if a.quick else (4, None, None)
    print(f"GPU: {torch.cuda.get_device_name() if DEV == 'cuda' else 'none (script check on CPU)'}, torch {torch.__version__}, {os.cpu_count()} CPU cores; data {root}")
    g = PRESETS['gpu']
    cache = repeated(prepare(root, size=g.size, channels=g.channels, progress=False, verbose=False, cache_dir=tempfile.mkdtemp()), REPEAT_TO)
    rate, n_tr, n_va, sec, r, prec = project_rate(cache, epochs=epochs)
    print(f"melanoma_nb fit() (preset gpu: {r.arch} {r.size} px, {r.channels} ch, batch {r.batch_size}, {prec}, channels_last, data on GPU): "
          f"{rate:8,.0f} img/s end to end ({n_tr} train + {n_va} validation images in {sec:.2f} s per epoch)")
    s = step_rate(cache, *((steps, warm) if a.quick else ()))
    print(f"melanoma_nb training step alone (Trainer.one_batch, bf16, batch {r.batch_size}):{s:8,.0f} img/s")
    if a.compile:
        crate = project_rate(cache, compile_=True, epochs=epochs)[0]
        print(f"melanoma_nb fit() with torch.compile: {crate:8,.0f} img/s end to end")
    paths = [str(p) for p in scan(root).paths] * 5
    for w in (0, 4):
        o = original_rate(paths, w, *((steps, warm) if a.quick else ()))
        print(f"original-style loop (PIL per item, gray, batch {ORIGINAL.batch_size}, fp32, the library's step with the original's recipe; "
              f"{w} loader workers): {o:8,.0f} img/s  -> melanoma_nb step is {s/o:.1f}x")


if __name__ == '__main__': main()
