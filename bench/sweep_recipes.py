"""Recipe sweep on the development images: validation accuracy and ROC-AUC for candidate architectures, sizes and
epoch counts, over several seeds (each seed is a different stratified train/validation split and initialisation).

Run: python bench/sweep_recipes.py [DATA_DIR] [--device cuda] [--seeds 3] [--epochs 10 25]
It is slow on a 2-core CPU (minutes per configuration) and takes about a minute on a GPU; the maths of fit() is the
same on both, so what it says about recipes carries over. It is how the `cpu` preset was chosen (see the README).
"""
import argparse, statistics, tempfile, time
from dataclasses import replace
from pathlib import Path

from melanoma_nb.data import prepare, sample_root
from melanoma_nb.training import PRESETS, Recipe, fit

CANDIDATES = [('resnet18', 64), ('resnet18', 80), ('resnet18', 96), ('resnet18', 128), ('cnn', 128)]


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument('data', nargs='?'); ap.add_argument('--device', default=None)
    ap.add_argument('--seeds', type=int, default=3); ap.add_argument('--epochs', type=int, nargs='+', default=[10, 25])
    a = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    cands = [Path(a.data)] if a.data else [here.parent/'shared'/'data'/'melanoma-dev', here/'.devdata'/'melanoma-dev', sample_root()]
    root = next(c for c in cands if c.is_dir())
    print(f"data: {root}; val_frac {PRESETS['cpu'].val_frac}; seeds {a.seeds}")
    print(f"{'arch':9s} {'size':>4s} {'epochs':>6s}  {'val acc (mean ± sd)':>20s}  {'val AUC (mean ± sd)':>20s}  {'s/run':>6s}")
    caches = {}
    for arch, size in CANDIDATES:
        if size not in caches: caches[size] = prepare(root, size=size, channels=3, progress=False, verbose=False, cache_dir=tempfile.mkdtemp())
        for ep in a.epochs:
            accs, aucs, t = [], [], time.perf_counter()
            for seed in range(a.seeds):
                r = replace(PRESETS['cpu'], arch=arch, size=size, epochs=ep, seed=seed, pretrained=False, weights=None, freeze_epochs=0)
                res = fit(r, caches[size], device=a.device, progress=False, verbose=False)
                last = res.history[-1]
                accs.append(last['val_acc']); aucs.append(last['val_auc'])
            sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
            print(f"{arch:9s} {size:4d} {ep:6d}  {statistics.mean(accs):12.3f} ± {sd(accs):.3f}  "
                  f"{statistics.mean(aucs):12.3f} ± {sd(aucs):.3f}  {(time.perf_counter()-t)/a.seeds:6.1f}", flush=True)


if __name__ == '__main__': main()
