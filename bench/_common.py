"""Helpers shared by the bench scripts: a synthetic image cache, a `Trainer` around a recipe (optionally with another
network), the original notebook's per-image PIL pipeline (uint8 out, so the library's step can take its batches), and
the CPU's name.

Every bench script that times or runs training steps goes through `melanoma_nb.training.Trainer.one_batch` (directly
or via `Trainer.time_steps`), so a change to the loss, clipping, schedule or precision reaches the benchmarks.
"""
import contextlib, platform, subprocess
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn

from melanoma_nb.data import ImageCache
from melanoma_nb.training import Plan, Trainer, make_optimizer

SCHEDULE_STEPS = 100_000     # the schedule of a bench Trainer: long enough that no bench steps past its end


def synthetic_cache(n: int, size: int, channels: int, seed: int = 0, classes=('benign', 'malignant')) -> ImageCache:
    "An in-memory `ImageCache` of `n` random uint8 images, all in train/, labels alternating (no files behind it)."
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(classes)
    return ImageCache(images, labels, np.array(['train'] * n), [f'synthetic/{i:06d}.png' for i in range(n)],
                      list(classes), size, channels, [], 'synthetic', 'split', 'synthetic')


def bench_recipe(recipe, **kw):
    "`recipe` made fit for timing: no pretrained download, no budget (no timed plan), no copy audit (no files), fixed precision ('auto': fp32)."
    r = replace(recipe, **kw)
    return replace(r, pretrained=False, weights=None, freeze_epochs=0, budget=None, group_split=False,
                   precision='fp32' if r.precision == 'auto' else r.precision)


class BenchTrainer(Trainer):
    "A `Trainer` whose plan is one epoch of `steps` steps, so that the schedule it builds from the plan is that long."
    def __init__(self, *args, steps: int = SCHEDULE_STEPS, **kw):
        self.steps = steps
        super().__init__(*args, **kw)
    def make_plan(self) -> Plan: return Plan(1, self.steps, precision=self.precision_info())


def trainer(recipe, cache=None, device='cpu', net: nn.Module | None = None, fused: bool | None = None,
            n: int | None = None, steps: int = SCHEDULE_STEPS) -> Trainer:
    """A `Trainer` for `recipe` (see `bench_recipe`) on `cache` (default: a synthetic one of 2 batches), ready for
    `one_batch`: `model` set, a schedule of `steps` steps. `net`: train this network instead of the recipe's
    architecture; `fused`: AdamW's fused kernel (default: the Trainer's choice, fused on CUDA only)."""
    r = bench_recipe(recipe)
    dev = torch.device(device)
    if cache is None: cache = synthetic_cache(n or 2 * r.batch_size, r.size, r.channels)
    opt_func = None if fused is None else (lambda net, recipe: make_optimizer(net, recipe, fused=fused))
    t = BenchTrainer(r, cache, dev=dev, progress=False, verbose=False, net=net, opt_func=opt_func, steps=steps)
    t.model = torch.compile(t.net) if r.compile else t.net
    t.model.train()
    return t


def first_batch(t: Trainer):
    "The trainer's first training batch (uint8 NCHW, labels), on its device."
    xb, yb = next(iter(t.train_b))
    return xb.to(t.dev), yb.to(t.dev)


class OriginalStyle(torch.utils.data.Dataset):
    """The original notebook's input pipeline, per image: PIL decode -> gray -> resize 224 -> random flip; returned as
    uint8 (1, 224, 224) so that `Trainer.one_batch` normalises it (the original normalised float tensors here)."""
    def __init__(self, paths, labels=None, size: int = 224):
        import torchvision.transforms as T
        self.paths, self.labels = list(paths), (list(labels) if labels is not None else [0] * len(paths))
        self.tf = T.Compose([T.Grayscale(1), T.Resize((size, size)), T.RandomHorizontalFlip(), T.PILToTensor()])
    def __len__(self): return len(self.paths)
    def __getitem__(self, i):
        from PIL import Image
        with Image.open(self.paths[i]) as im: return self.tf(im.convert('RGB')), int(self.labels[i])


def cpu_name() -> str:
    "lscpu's 'Model name' (else /proc/cpuinfo's, else platform's)."
    with contextlib.suppress(OSError):
        for line in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines():
            if line.startswith('Model name'): return line.split(':', 1)[1].strip()
    with contextlib.suppress(OSError):
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown CPU'


def cpu_flags() -> set:
    "The CPU's flags (lscpu 'Flags', else /proc/cpuinfo); empty where neither exists."
    with contextlib.suppress(OSError):
        for line in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines():
            if line.startswith('Flags'): return set(line.split(':', 1)[1].split())
    with contextlib.suppress(OSError):
        for line in open('/proc/cpuinfo'):
            if line.startswith('flags'): return set(line.split(':', 1)[1].split())
    return set()


def loadavg() -> str:
    with contextlib.suppress(OSError): return ' '.join(open('/proc/loadavg').read().split()[:3])
    return '?'
