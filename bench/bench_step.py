"""The `cpu` preset's training step against variants of it, interleaved in one run on this machine; and its fp32 vs
bf16 autocast step at several sizes.

Run: PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE python bench/bench_step.py [--rounds 8] [--variants a,b,...] [--profile NAME]
                                                                      [--precision-sizes 96,112,128] [--precision-rounds 5]

Every variant is one call of the library's step, `Trainer.one_batch` (uint8 batch -> on-device augmentation ->
forward in the recipe's precision -> class-weighted label-smoothed loss -> backward -> gradient clipping -> AdamW ->
zero_grad -> schedule step) on one batch of random uint8 images, through a `Trainer` built for the variant's recipe
(bench/_common.py). A variant is a change of the recipe (precision, size, batch size with the learning rate scaled
linearly, augmentation, torch.compile, architecture) or, where the recipe has no field for it, of the Trainer's
network or optimiser (the narrow/three-stage ResNets, fused AdamW) or of the thread count around the call; the step
itself is always the library's. The variants are measured round-robin (A, B, C, A, B, C, ...) so that load from
other processes falls on all of them alike; each prints the median training images/s and its ratio to `today`
(the `cpu` preset as it is: resnet18w32, 96 px, batch 32, fp32) measured in the same rounds.
`original` is the original notebook's recipe (PRESETS['seed']: its CNN, gray 224, batch 16, no augmentation, constant
rate, no clipping, no smoothing, unweighted loss) fed by the original notebook's per-image PIL pipeline (loading
timed with the step).

Then, for the `cpu` preset's model at each of --precision-sizes, fp32 and bf16 autocast steps timed in alternation
with `Trainer.time_steps(1, 'fp32')` / `Trainer.time_steps(1, 'bf16')` (the measurement `Trainer.set_precision` makes
when a run starts), their medians and the ratio bf16/fp32 (the library picks bf16 at <= BF16_GAIN), with the CPU named
(lscpu's model name and whether it has the amx_bf16 flag).

`no_cl` and `no_cl+bf16` train in PyTorch's default NCHW layout (`Recipe.channels_last=False`) instead of channels-last.
Dropped since the step moved into the library: `w32` and `w32+px64` (resnet18w32 is now the `cpu`
preset, i.e. `today` and `px64`); the full-width ResNet-18 that was `today` is now the variant `r18`.
"""
import argparse, os, statistics, sys, time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, cpu_name, first_batch, loadavg, synthetic_cache, trainer, OriginalStyle   # noqa: E402
from melanoma_nb.resnet import narrow_resnet18
from melanoma_nb.training import BF16_GAIN, PRESETS


def resnet_narrow(width: int = 64, layers=(2, 2, 2, 2), num_classes: int = 2) -> nn.Module:
    "torchvision's ResNet with BasicBlocks whose stage widths are width x (1, 2, 4, 8); len(layers) stages (3 or 4)."
    from torchvision.models.resnet import BasicBlock, ResNet
    net = ResNet(BasicBlock, [*layers, *([1] * (4 - len(layers)))], num_classes=num_classes)
    if width != 64 or len(layers) < 4:                 # rebuild the stages at the asked width/depth
        net.inplanes = width
        net.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False); net.bn1 = nn.BatchNorm2d(width)
        stages = [net._make_layer(BasicBlock, width * 2**i, n, stride=1 if i == 0 else 2) for i, n in enumerate(layers)]
        for i in range(4): setattr(net, f'layer{i+1}', stages[i] if i < len(stages) else nn.Identity())
        net.fc = nn.Linear(width * 2**(len(layers) - 1), num_classes)
        for m in net.modules():                        # torchvision's initialisation
            if isinstance(m, nn.Conv2d): nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d): nn.init.ones_(m.weight); nn.init.zeros_(m.bias)
    return net


def build(arch):
    "A network for `arch`: 'r18_3stage' (ResNet-18 without layer4), 'r18_wNN' (stage widths NN x (1, 2, 4, 8)); None for a library arch."
    if arch == 'r18_3stage': return resnet_narrow(64, (2, 2, 2))
    if arch.startswith('r18_w'): return narrow_resnet18(int(arch[5:]))
    return None


# name: settings. Recipe fields (precision, compile, size, batch_size, augment, arch, channels_last) change the `cpu` preset; `net`
# replaces the Trainer's network (build()), `fused` its optimiser, `threads` the torch threads around the step.
VARIANTS = {
    'today':          {},
    'bf16':           dict(precision='bf16'),
    'compile':        dict(compile=True),
    'compile+bf16':   dict(compile=True, precision='bf16'),
    'fused':          dict(fused=True),
    'threads1':       dict(threads=1),
    'bs64':           dict(batch_size=64),
    'bs128':          dict(batch_size=128),
    'px80':           dict(size=80),
    'px64':           dict(size=64),
    'px64+bf16':      dict(size=64, precision='bf16'),
    'bf16+bs64':      dict(precision='bf16', batch_size=64),
    'r18':            dict(arch='resnet18'),
    'r18+bf16':       dict(arch='resnet18', precision='bf16'),
    'no_layer4':      dict(net='r18_3stage'),
    'w48':            dict(net='r18_w48'),
    'w48+bf16':       dict(net='r18_w48', precision='bf16'),
    'no_layer4+bf16': dict(net='r18_3stage', precision='bf16'),
    'no_aug':         dict(augment=False),
    'no_cl':          dict(channels_last=False),
    'no_cl+bf16':     dict(channels_last=False, precision='bf16'),
    'no_layer4+px64': dict(net='r18_3stage', size=64),
    'no_layer4+px80': dict(net='r18_3stage', size=80),
    'no_layer4+bs64': dict(net='r18_3stage', batch_size=64),
    'no_layer4+fused': dict(net='r18_3stage', fused=True),
}
DEFAULT = 'today,r18,no_layer4+px64,px64,no_layer4,w48,fused,threads1,bs64,bf16,original'   # compile: add it (~3 min to compile)
ORIGINAL = 'PIL per image, seed preset: cnn, gray 224, batch 16, unweighted loss'


class Step:
    "One variant's Trainer and batch; `__call__` runs one `Trainer.one_batch` and returns its number of images."
    def __init__(self, net=None, fused=None, threads=None, **recipe):
        r = PRESETS['cpu']
        if 'batch_size' in recipe: recipe['lr'] = r.lr * recipe['batch_size'] / r.batch_size   # lr per batch: linear in the batch
        self.t = trainer(r.update(**{'precision': 'fp32', **recipe}), net=build(net) if net else None, fused=fused)
        self.xb, self.yb = first_batch(self.t)
        self.g, self.threads = torch.Generator().manual_seed(0), threads

    def __call__(self):
        old = torch.get_num_threads()
        if self.threads: torch.set_num_threads(self.threads)
        try: self.t.one_batch(self.xb, self.yb, self.g)
        finally: torch.set_num_threads(old)
        return len(self.xb)


class Original:
    "The original notebook's recipe (PRESETS['seed'], unweighted loss) in the library's step, its batches from the original's PIL pipeline."
    def __init__(self, root):
        from melanoma_nb.data import scan
        idx = scan(root)
        r = PRESETS['seed'].update(balance='none', precision='fp32')
        self.t = trainer(r, synthetic_cache(2 * r.batch_size, r.size, r.channels))   # the cache only gives the Trainer its shape
        self.dl = torch.utils.data.DataLoader(OriginalStyle(idx.paths, idx.labels, r.size), batch_size=r.batch_size,
                                              shuffle=True, num_workers=0)
        self.it, self.g = iter(self.dl), torch.Generator().manual_seed(0)

    def __call__(self):
        try: x, y = next(self.it)
        except StopIteration: self.it = iter(self.dl); x, y = next(self.it)
        self.t.one_batch(x, y, self.g)
        return len(x)


def make(name, root):
    if name == 'original': return Original(root)
    return Step(**VARIANTS[name])


def precision_table(sizes, rounds):
    "fp32 vs bf16 autocast of the `cpu` preset's step at each size: medians of `rounds` alternated time_steps(1) calls."
    flags = cpu_flags()
    print(f"\nfp32 vs bf16 autocast, the `cpu` preset's step ({PRESETS['cpu'].arch}, batch {PRESETS['cpu'].batch_size}), "
          f"Trainer.time_steps(1, ...) alternated, median of {rounds}; CPU {cpu_name()}, "
          f"amx_bf16 {'yes' if 'amx_bf16' in flags else 'no'}")
    print(f"  {'size':>4s} {'fp32 ms':>9s} {'bf16 ms':>9s} {'bf16/fp32':>9s}  library's choice (bf16 at <= {BF16_GAIN})")
    for s in sizes:
        t = trainer(PRESETS['cpu'].update(size=s, precision='fp32'))
        t.time_steps(1, 'bf16')                        # first use of bf16: kernels are chosen and built
        a, b = [], []
        for k in range(rounds):
            for p, ts in ((('fp32', a), ('bf16', b)) if k % 2 == 0 else (('bf16', b), ('fp32', a))):
                ts.append(t.time_steps(1, p)[0])
        ratio = float(np.median(np.array(b) / np.array(a)))
        print(f"  {s:4d} {1000 * statistics.median(a):9.1f} {1000 * statistics.median(b):9.1f} {ratio:9.2f}  "
              f"{'bf16' if ratio <= BF16_GAIN else 'fp32'}", flush=True)


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n')[0])
    ap.add_argument('--variants', default=DEFAULT, help=f'comma-separated, from: {", ".join(VARIANTS)}, original ("" for none)')
    ap.add_argument('--rounds', type=int, default=8, help='interleaved rounds (one step of each variant per round)')
    ap.add_argument('--warmup', type=int, default=2, help='untimed steps per variant first (compile happens here)')
    ap.add_argument('--profile', help='also print the top ops of this variant (torch.profiler, 3 steps)')
    ap.add_argument('--data', help='images for the original pipeline (default: ../shared/data/melanoma-dev or the sample)')
    ap.add_argument('--precision-sizes', default='96,112,128', help='sizes of the fp32 vs bf16 table ("" to skip it)')
    ap.add_argument('--precision-rounds', type=int, default=5, help='alternated fp32/bf16 pairs per size')
    a = ap.parse_args()
    names = [n.strip() for n in a.variants.split(',') if n.strip()]
    if names and 'today' not in names: names.insert(0, 'today')
    from melanoma_nb.data import sample_root
    dev = Path(__file__).resolve().parents[2]/'shared'/'data'/'melanoma-dev'
    root = Path(a.data) if a.data else (dev if dev.is_dir() else sample_root())

    print(f"CPU: {cpu_name()}; {os.cpu_count()} logical CPUs; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"oneDNN bf16 ISA: {torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()}; "
          f"amx_bf16: {'amx_bf16' in cpu_flags()}")
    print(f"load average at start: {loadavg()}")
    steps, setup = {}, {}
    for n in names:
        t = time.perf_counter(); steps[n] = make(n, root)
        for _ in range(a.warmup): steps[n]()
        setup[n] = time.perf_counter() - t
    times = {n: [] for n in names}
    for _ in range(a.rounds if names else 0):
        for n in names:
            t = time.perf_counter(); k = steps[n](); times[n].append(k / (time.perf_counter() - t))
    if names:
        rate = {n: statistics.median(v) for n, v in times.items()}
        print(f"load average at end:   {loadavg()}")
        print(f"\ntraining images/s (Trainer.one_batch), median of {a.rounds} interleaved rounds (one step each); "
              f"ratio vs today's step, same rounds")
        print(f"  {'variant':16s} {'images/s':>9s} {'vs today':>9s}  {'spread':>13s}  {'setup+warm-up s':>15s}  settings")
        for n in names:
            lo, hi = min(times[n]), max(times[n])
            print(f"  {n:16s} {rate[n]:9.1f} {rate[n]/rate['today']:8.2f}x  {lo:6.1f}-{hi:6.1f}  {setup[n]:15.1f}  "
                  f"{VARIANTS.get(n, ORIGINAL)}")
        for full, low in (('today', 'px64'), ('no_layer4', 'no_layer4+px64')):
            if full in rate and low in rate:   # progressive resizing: half the epochs at 64 px, then the rest at 96 px
                p = 2 / (1 / rate[full] + 1 / rate[low])
                print(f"  {'prog(' + low + ')':16s} {p:9.1f} {p/rate['today']:8.2f}x  (derived: half the images at 64 px, half at 96 px)")
        if 'original' in rate:
            others = ', '.join(f"{n} {rate[n]/rate['original']:.2f}x" for n in names if n not in ('today', 'original'))
            print(f"\ntoday's step vs the original notebook's pipeline: {rate['today']/rate['original']:.2f}x"
                  + (f"; {others}" if others else ''))
    sizes = [int(s) for s in a.precision_sizes.split(',') if s.strip()]
    if sizes: precision_table(sizes, a.precision_rounds)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        s = steps[a.profile] if a.profile in steps else make(a.profile, root)
        s()
        with profile(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(3): s()
        print(f"\ntop ops of {a.profile} (3 steps):")
        print(p.key_averages().table(sort_by='self_cpu_time_total', row_limit=25))


if __name__ == '__main__': main()
