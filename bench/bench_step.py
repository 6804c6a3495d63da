"""The `cpu` preset's training step against faster variants of it, interleaved in one run on this machine.

Run: PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE python bench/bench_step.py [--rounds 8] [--variants a,b,...] [--profile NAME]

Every variant is the whole training step of `Trainer.step` (uint8 batch -> on-device augmentation -> forward ->
class-weighted label-smoothed loss -> backward -> gradient clipping -> AdamW -> zero_grad -> one-cycle step) on random
uint8 images. The variants are measured round-robin (A, B, C, A, B, C, ...) so that load from other processes falls on
all of them alike; each prints the median training images/s and its ratio to `today` measured in the same rounds.
`original` is the original notebook's pipeline (PIL per image, its CNN, gray 224, batch 16; from bench_train.py).
"""
import argparse, contextlib, os, statistics, sys, time
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from melanoma_nb.cnn import create_model
from melanoma_nb.dataset import BatchTransform, norm_stats
from melanoma_nb.training import PRESETS, balanced_cross_entropy, make_optimizer, make_scheduler


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


# name: settings (anything left out is today's: resnet18, 96 px, batch 32, fp32, channels_last, foreach AdamW, 2 threads)
VARIANTS = {
    'today':         {},
    'bf16':          dict(bf16=True),
    'compile':       dict(compile=True),
    'compile+bf16':  dict(compile=True, bf16=True),
    'fused':         dict(fused=True),
    'no_cl':         dict(channels_last=False),
    'threads1':      dict(threads=1),
    'bs64':          dict(batch=64),
    'bs128':         dict(batch=128),
    'px80':          dict(size=80),
    'px64':          dict(size=64),
    'px64+bf16':     dict(size=64, bf16=True),
    'bf16+bs64':     dict(bf16=True, batch=64),
    'no_layer4':     dict(arch='r18_3stage'),
    'w32':           dict(arch='r18_w32'),
    'w48':           dict(arch='r18_w48'),
    'w48+bf16':      dict(arch='r18_w48', bf16=True),
    'no_layer4+bf16': dict(arch='r18_3stage', bf16=True),
    'no_aug':        dict(augment=False),
    'no_layer4+px64': dict(arch='r18_3stage', size=64),
    'no_layer4+px80': dict(arch='r18_3stage', size=80),
    'w32+px64':      dict(arch='r18_w32', size=64),
    'no_layer4+bs64': dict(arch='r18_3stage', batch=64),
    'no_layer4+fused': dict(arch='r18_3stage', fused=True),
}
DEFAULT = 'today,w32,no_layer4+px64,px64,no_layer4,w48,fused,no_cl,threads1,bs64,bf16,original'   # compile: add it (~3 min to compile)


def build(arch):
    if arch == 'resnet18': return create_model('resnet18', in_chans=3)
    if arch == 'r18_3stage': return resnet_narrow(64, (2, 2, 2))
    if arch.startswith('r18_w'): return resnet_narrow(int(arch[5:]))
    raise ValueError(arch)


class Step:
    "One variant's model, optimiser, schedule and batch; `__call__` runs one training step and returns its images."
    def __init__(self, arch='resnet18', size=96, batch=32, bf16=False, compile=False, fused=False, channels_last=True,
                 threads=None, augment=True):
        r = PRESETS['cpu']
        torch.manual_seed(0)
        self.net = build(arch)
        self.cl, self.bf16, self.threads, self.batch = channels_last, bf16, threads, batch
        if channels_last: self.net = self.net.to(memory_format=torch.channels_last)
        self.opt = make_optimizer(self.net, r, fused=fused)
        self.sched = make_scheduler(self.opt, r.update(lr=r.lr * batch / 32), 10_000)   # lr-per-batch: linear in the batch
        self.model = torch.compile(self.net) if compile else self.net
        self.tf = BatchTransform(*norm_stats(3), train=augment)
        self.x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
        self.y = torch.randint(0, 2, (batch,)); self.g = torch.Generator().manual_seed(0)
        self.w = torch.tensor([0.96, 1.04]); self.smooth, self.clip = r.label_smoothing, r.grad_clip
        self.net.train()

    def __call__(self):
        old = torch.get_num_threads()
        if self.threads: torch.set_num_threads(self.threads)
        try:
            x = self.tf(self.x, self.g)
            if self.cl: x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast('cpu', dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext():
                logits = self.model(x)
            loss = balanced_cross_entropy(logits, self.y, self.w, self.smooth)
            loss.item()
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
            self.opt.step(); self.opt.zero_grad(set_to_none=True); self.sched.step()
        finally: torch.set_num_threads(old)
        return self.batch


class Original:
    "The original notebook's training step (bench_train.original_rate's loop), one batch of 16 per call."
    def __init__(self, root):
        import torch.nn.functional as F
        from bench_train import OriginalStyle
        from melanoma_nb.data import scan
        torch.manual_seed(0)
        self.F, self.net = F, create_model('cnn', in_chans=1)
        self.opt = torch.optim.Adam(self.net.parameters(), 1e-3)
        self.dl = torch.utils.data.DataLoader(OriginalStyle(scan(root).paths), batch_size=16, shuffle=True, num_workers=0)
        self.it = iter(self.dl); self.net.train()

    def __call__(self):
        try: x, _ = next(self.it)
        except StopIteration: self.it = iter(self.dl); x, _ = next(self.it)
        y = torch.randint(0, 2, (len(x),))
        loss = self.F.cross_entropy(self.net(x), y); self.opt.zero_grad(); loss.backward(); self.opt.step()
        return len(x)


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    import platform; return platform.processor() or 'unknown CPU'


def loadavg() -> str:
    with contextlib.suppress(OSError): return ' '.join(open('/proc/loadavg').read().split()[:3])
    return '?'


def make(name, root):
    if name == 'original': return Original(root)
    return Step(**VARIANTS[name])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--variants', default=DEFAULT, help=f'comma-separated, from: {", ".join(VARIANTS)}, original')
    ap.add_argument('--rounds', type=int, default=8, help='interleaved rounds (one step of each variant per round)')
    ap.add_argument('--warmup', type=int, default=2, help='untimed steps per variant first (compile happens here)')
    ap.add_argument('--profile', help='also print the top ops of this variant (torch.profiler, 3 steps)')
    ap.add_argument('--data', help='images for the original pipeline (default: ../shared/data/melanoma-dev or the sample)')
    a = ap.parse_args()
    names = [n.strip() for n in a.variants.split(',') if n.strip()]
    if 'today' not in names: names.insert(0, 'today')
    from melanoma_nb.data import sample_root
    dev = Path(__file__).resolve().parents[2]/'shared'/'data'/'melanoma-dev'
    root = Path(a.data) if a.data else (dev if dev.is_dir() else sample_root())

    print(f"CPU: {cpu_name()}; {os.cpu_count()} logical CPUs; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"oneDNN bf16 ISA: {torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    print(f"load average at start: {loadavg()}")
    steps, setup = {}, {}
    for n in names:
        t = time.perf_counter(); steps[n] = make(n, root)
        for _ in range(a.warmup): steps[n]()
        setup[n] = time.perf_counter() - t
    times = {n: [] for n in names}
    for _ in range(a.rounds):
        for n in names:
            t = time.perf_counter(); k = steps[n](); times[n].append(k / (time.perf_counter() - t))
    rate = {n: statistics.median(v) for n, v in times.items()}
    print(f"load average at end:   {loadavg()}")
    print(f"\ntraining images/s, median of {a.rounds} interleaved rounds (one step each); ratio vs today's step, same rounds")
    print(f"  {'variant':16s} {'images/s':>9s} {'vs today':>9s}  {'spread':>13s}  {'setup+warm-up s':>15s}  settings")
    for n in names:
        lo, hi = min(times[n]), max(times[n])
        print(f"  {n:16s} {rate[n]:9.1f} {rate[n]/rate['today']:8.2f}x  {lo:6.1f}-{hi:6.1f}  {setup[n]:15.1f}  "
              f"{VARIANTS.get(n, 'PIL per image, cnn, gray 224, batch 16')}")
    for full, low in (('today', 'px64'), ('no_layer4', 'no_layer4+px64'), ('w32', 'w32+px64')):
        if full in rate and low in rate:   # progressive resizing: half the epochs at 64 px, then the rest at 96 px
            p = 2 / (1 / rate[full] + 1 / rate[low])
            print(f"  {'prog(' + low + ')':16s} {p:9.1f} {p/rate['today']:8.2f}x  (derived: half the images at 64 px, half at 96 px)")
    if 'original' in rate:
        print(f"\ntoday's step vs the original notebook's pipeline: {rate['today']/rate['original']:.2f}x; "
              + ', '.join(f"{n} {rate[n]/rate['original']:.2f}x" for n in names if n not in ('today', 'original')))
    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        s = steps[a.profile] if a.profile in steps else make(a.profile, root)
        s()
        with profile(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(3): s()
        print(f"\ntop ops of {a.profile} (3 steps):")
        print(p.key_averages().table(sort_by='self_cpu_time_total', row_limit=25))


if __name__ == '__main__': main()
