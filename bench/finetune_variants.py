"""Fine-tuning variants of EfficientNet-Lite from its ImageNet weights, trained for a fixed number of epochs on the full
data set's train/ and judged on its validation split only (test/ is never read): how the pretrained `cpu` preset was
chosen (07_training, "Choosing the pretrained recipe").

Run: PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE python bench/finetune_variants.py --data DATA --out /tmp/finetune \
        [--epochs 3] [--seed 0] [--variants base,one_rate,unit,bn_frozen,size128]

Every variant starts from `BASE` (EfficientNet-Lite0, ImageNet weights, RGB 96 px, batch 32, lr 1e-3, the head alone
in the first epoch, then rates from 0.1 lr at the stem to lr at the head, a ring on every training image, fp32) with
the changes of `VARIANTS`, and keeps one seed's validation split (--seed, 0 by default), so all rows of a run compare
on the same images. Each row: the kept epoch's validation accuracy and ROC-AUC, then the AUC and the sensitivity (at
the run's own threshold) on the validation images WITHOUT dark corners (the audit's detector), which a model cannot
get right by reading the dermoscope's ring; the epochs and the minutes each took on this machine.
"""
import argparse, sys, time
from dataclasses import replace
from pathlib import Path

import numpy as np

import melanoma_nb.training as T
from melanoma_nb.audit import has_dark_corners
from melanoma_nb.data import prepare
from melanoma_nb.evaluation import predict_proba
from melanoma_nb.metrics import metrics
from melanoma_nb.settings import Recipe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name   # noqa: E402

BASE = Recipe(arch='efficientnet_lite0', pretrained=True, channels=3, size=96, epochs=3, batch_size=32, lr=1e-3,
              freeze_epochs=1, body_lr=0.1, ring=1.0, precision='fp32')
VARIANTS = {
    'base': {},
    'one_rate': dict(body_lr=1.0),                    # one learning rate for every layer
    'no_warmup': dict(freeze_epochs=0),               # the whole network from the first step
    'unit': dict(scaling='unit'),                     # inputs in [-1, 1], as the weights were trained in TF-Lite
    'lr3e-3': dict(lr=3e-3),
    'ring0.5': dict(ring=0.5),
    'size128': dict(size=128),
    'size160': dict(size=160),
    'lite1': dict(arch='efficientnet_lite1'),         # the next width/depth of the family, same size
    'bn_frozen': {},                                  # + every BatchNorm held in eval mode (ImageNet's statistics)
}
HOLD_BN = {'bn_frozen'}                               # variants whose whole-network phase keeps BatchNorm frozen


def unfreeze_holding_bn(model):
    "`resnet.unfreeze`, then every BatchNorm layer but the head's held in eval mode: its running statistics stay ImageNet's."
    from melanoma_nb import resnet
    resnet.unfreeze(model)
    resnet._hold_bn(model, True, skip=list(resnet._head(model).modules()))
    return model


def val_row(res, recipe, cache, va) -> dict:
    "Validation figures of a finished run: all images, and the images without dark corners."
    m = res.metrics
    p = predict_proba(res.model, cache.images[va], *T.input_stats(recipe), positive=1, temperature=m['temperature'])
    y = (cache.labels[va] == 1).astype(int)
    clean = ~has_dark_corners(cache.images[va])
    c = metrics(y[clean], p[clean], m['threshold'])
    return dict(acc=m['val_acc'], auc=m['val_auc'], clean_auc=c['roc_auc'], clean_sens=c['sensitivity'], n_clean=int(clean.sum()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', required=True); ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--seed', type=int, default=0, help="the run's seed, which also draws the validation split")
    ap.add_argument('--variants', default='base,one_rate,unit,size128')
    a = ap.parse_args()
    names = a.variants.split(',')
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        print(f"finetune_variants: unknown variant(s) {', '.join(bad)}: use {', '.join(VARIANTS)}", file=sys.stderr)
        sys.exit(2)
    print(f"On {cpu_name()}: EfficientNet-Lite from ImageNet (Lite0 unless named), {a.epochs} epochs, fp32, "
          f"seed {a.seed}'s validation split")
    print(f"{'variant':10s} {'size':>4s} {'val acc':>7s} {'AUC':>6s} {'AUC no corners':>14s} {'sens no corners':>15s} "
          f"{'epochs':>6s} {'min':>5s}", flush=True)
    caches = {}
    for v in names:
        r = replace(BASE, epochs=a.epochs, seed=a.seed, **VARIANTS[v])
        if r.size not in caches: caches[r.size] = prepare(a.data, size=r.size, channels=3, progress=False, verbose=False)
        cache = caches[r.size]
        _, va, _ = T.validation_split(cache, r)
        t = time.monotonic()
        plain = T.unfreeze
        if v in HOLD_BN: T.unfreeze = unfreeze_holding_bn   # the Trainer calls it when the head-only epochs end
        try: res = T.fit(r, cache, out_dir=a.out/v, progress=False, verbose=False)
        finally: T.unfreeze = plain
        mins = (time.monotonic() - t) / 60
        row = val_row(res, r, cache, va)
        print(f"{v:10s} {r.size:4d} {row['acc']:7.3f} {row['auc']:6.3f} {row['clean_auc']:14.3f} "
              f"{row['clean_sens']:15.3f} {a.epochs:6d} {mins:5.1f}   (no corners: {row['n_clean']} of {len(va)})",
              flush=True)


if __name__ == '__main__':
    main()
