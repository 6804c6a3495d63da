"""Model size and inference throughput: parameters, multiply-adds and measured images/s for every architecture.

Run: python bench/bench_models.py [--archs resnet18 cnn] [--size 224] [--in-chans 3] [--batch 16 64]
                                  [--repeats 5] [--device cpu|cuda] [--amp]
Times the forward pass only (random input, eval mode, inference_mode), one warm-up batch, median of the repeats
(melanoma_nb.architecture.inference_speed). --amp times float16 autocast on CUDA, the way GPU inference usually runs.
"""
import argparse, contextlib, platform

import torch

from melanoma_nb.architecture import Table, count_macs, inference_speed
from melanoma_nb.cnn import ARCHS, create_model


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n\n')[0])
    ap.add_argument('--archs', nargs='+', default=list(ARCHS), choices=ARCHS)
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--in-chans', type=int, default=3, choices=(1, 3))
    ap.add_argument('--batch', type=int, nargs='+', default=[16])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--amp', action='store_true', help='float16 autocast (CUDA only)')
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if a.amp and dev.type != 'cuda': ap.error('--amp needs a CUDA device')
    where = (torch.cuda.get_device_name(dev) if dev.type == 'cuda'
             else f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads")
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    rows = []
    for arch in a.archs:
        m = create_model(arch, in_chans=a.in_chans)
        n_par, macs = sum(p.numel() for p in m.parameters()), count_macs(m, a.size, a.in_chans)
        speeds = []
        for bs in a.batch:
            amp = torch.autocast('cuda', dtype=torch.float16) if a.amp else contextlib.nullcontext()
            with amp: speeds.append(round(inference_speed(m, a.size, a.in_chans, bs, a.repeats, dev), 1))
        rows.append((arch, n_par, round(macs / 1e9, 3), *speeds))
    t = Table(('model', 'parameters', 'GMACs / image', *[f'images/s (batch {b})' for b in a.batch]), rows,
              footer=f"{a.in_chans}×{a.size}×{a.size} input, median of {a.repeats} batches, {where}"
                     f"{', float16 autocast' if a.amp else ''}; torch {torch.__version__}.")
    print(t)
    return t


if __name__ == '__main__': main()
