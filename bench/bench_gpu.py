"""GPU throughput: this project's training loop against a loop built like the original notebook's, on the same GPU.

Run on a CUDA machine: python bench/bench_gpu.py [DATA_DIR] [--compile]
(default data: ../shared/data/melanoma-dev or .devdata/melanoma-dev if present, else the bundled sample; the images
are repeated to 4,000 so that epochs are long enough to time.)

Prints images/s for ResNet-18 at 224x224 (3 channels, from scratch):
  - melanoma_nb's fit(): uint8 images on the GPU once, on-device augmentation, bf16 autocast, channels_last, fused AdamW
    (end to end per epoch, validation included, and the training steps alone);
  - the original notebook's style: a DataLoader of per-image PIL decode + transforms, batch 16, fp32, Adam
    (gray input through a 1-channel conv1, as the original did).
"""
import argparse, os, statistics, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from melanoma_nb.data import ImageCache, prepare, sample_root, scan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import OriginalStyle        # noqa: E402  the original notebook's per-image pipeline
from melanoma_nb.cnn import create_model
from melanoma_nb.training import PRESETS, fit

REPEAT_TO = int(os.environ.get('BENCH_REPEAT_TO', 4000))
DEV = os.environ.get('BENCH_DEVICE', 'cuda')   # 'cpu' only to check the script itself


def repeated(cache, n):
    k = int(np.ceil(n / len(cache)))
    return ImageCache(np.concatenate([np.asarray(cache.images)] * k)[:n], np.tile(cache.labels, k)[:n],
                      np.array(['train'] * n), (cache.paths * k)[:n], cache.classes, cache.size, cache.channels, [],
                      cache.root, 'split', 'bench')


def sync():
    if DEV == 'cuda': torch.cuda.synchronize()


def project_rate(cache, compile_=False):
    r = replace(PRESETS['gpu'], pretrained=False, weights=None, freeze_epochs=0, epochs=4, compile=compile_)
    stamps = []
    res = fit(r, cache, device=DEV, progress=False, verbose=False,
              on_epoch_end=lambda row: (sync(), stamps.append(time.perf_counter())))
    n_tr = res.metrics['n_train']; n_va = res.metrics['n_val']
    per_epoch = statistics.median(np.diff(stamps))         # epochs 2..4: warm-up (cudnn autotune, compile) excluded
    return (n_tr + n_va) / per_epoch, n_tr, n_va, per_epoch, r


def step_rate(cache, bs=64, steps=40):
    "The training step alone, as fit() runs it on CUDA (same components), to separate it from validation."
    from melanoma_nb.dataset import BatchTransform, DeviceBatches, norm_stats
    from melanoma_nb.training import balanced_cross_entropy, make_optimizer
    r = PRESETS['gpu']
    net = create_model('resnet18', in_chans=3).to(DEV).to(memory_format=torch.channels_last)
    opt = make_optimizer(net, r, fused=True)
    tf = BatchTransform(*norm_stats(3), train=True).to(DEV)
    db = DeviceBatches(cache.images, cache.labels, np.arange(len(cache)), DEV, bs, shuffle=True, drop_last=True)
    g = torch.Generator(device=DEV).manual_seed(0)
    it = iter(db); net.train()
    def one():
        nonlocal it
        try: xb, yb = next(it)
        except StopIteration: it = iter(db); xb, yb = next(it)
        x = tf(xb, g).contiguous(memory_format=torch.channels_last)
        with torch.autocast(DEV, dtype=torch.bfloat16): logits = net(x)
        loss = balanced_cross_entropy(logits, yb, None, r.label_smoothing)
        loss.backward(); torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(10): one()
    sync(); t = time.perf_counter()
    for _ in range(steps): one()
    sync()
    return steps * bs / (time.perf_counter() - t)


def original_rate(paths, workers, steps=60):
    net = create_model('resnet18', in_chans=1).to(DEV)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    dl = torch.utils.data.DataLoader(OriginalStyle(paths), batch_size=16, shuffle=True, num_workers=workers)
    net.train(); n, k, t = 0, 0, None
    while True:
        for x, _ in dl:
            x = x.to(DEV); y = torch.randint(0, 2, (len(x),), device=DEV)
            loss = F.cross_entropy(net(x), y); opt.zero_grad(); loss.backward(); opt.step()
            k += 1
            if k == 5: sync(); t = time.perf_counter(); continue     # 5 warm-up steps
            if t is not None: n += len(x)
            if n >= steps * 16:
                sync(); return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('data', nargs='?'); ap.add_argument('--compile', action='store_true')
    a = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    cands = [Path(a.data)] if a.data else [here.parent/'shared'/'data'/'melanoma-dev', here/'.devdata'/'melanoma-dev', sample_root()]
    root = next(c for c in cands if c.is_dir())
    assert DEV != 'cuda' or torch.cuda.is_available(), 'this benchmark needs a CUDA GPU'
    print(f"GPU: {torch.cuda.get_device_name() if DEV == 'cuda' else 'none (script check on CPU)'}, torch {torch.__version__}, {os.cpu_count()} CPU cores; data {root}")
    cache = repeated(prepare(root, size=224, channels=3, progress=False, verbose=False, cache_dir=tempfile.mkdtemp()), REPEAT_TO)
    rate, n_tr, n_va, sec, r = project_rate(cache)
    print(f"melanoma_nb fit() (preset gpu: resnet18 224 RGB, batch {r.batch_size}, bf16, channels_last, data on GPU): "
          f"{rate:8,.0f} img/s end to end ({n_tr} train + {n_va} validation images in {sec:.2f} s per epoch)")
    s = step_rate(cache, r.batch_size)
    print(f"melanoma_nb training step alone (same components, batch {r.batch_size}):{s:8,.0f} img/s")
    if a.compile:
        crate = project_rate(cache, compile_=True)[0]
        print(f"melanoma_nb fit() with torch.compile: {crate:8,.0f} img/s end to end")
    paths = [str(p) for p in scan(root).paths] * 5
    for w in (0, 4):
        o = original_rate(paths, w)
        print(f"original-style loop (PIL per item, gray, batch 16, fp32, Adam; {w} loader workers): {o:8,.0f} img/s"
              f"  -> melanoma_nb step is {s/o:.1f}x")


if __name__ == '__main__': main()
