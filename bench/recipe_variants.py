"""Variants of the `cpu` recipe trained for a fixed number of epochs on the full data set's train/, judged on its
validation split only (test/ is never read): how 07_training's "Choosing the `cpu` recipe" table was extended.

Run: PYTHONPATH=. OMP_WAIT_POLICY=PASSIVE python bench/recipe_variants.py --data DATA --out /tmp/variants \
        [--epochs 6] [--variants preset,head,seeds2,ring0.5,fastai_opt]

Each variant is one `fit` of the `cpu` preset in fp32 with `--epochs` epochs (no budget, so the machine's speed does
not change what is trained) and the changes below; every variant keeps seed 0's validation split, so their figures
compare on the same 1,921 images. It prints the kept epoch's validation accuracy, ROC-AUC, sensitivity and
specificity, the epochs and the minutes each took.
- Recipe fields: `ring0.5` (a ring on half the training images), `fastai_opt` (fastai's optimiser settings: lr 1e-3,
  weight decay 0.01, no label smoothing).
- `head`: fastai's head on the same body: average and max pooling concatenated, then BatchNorm, dropout 0.25,
  512 units, ReLU, BatchNorm, dropout 0.5, the output layer. The recipe has no field for it: the bench swaps the
  model `fit` builds (`melanoma_nb.training.create_model`) for the run.
- `seedsK`: K models of the preset with seeds 0..K-1 (initialisation, data order, augmentation; the split stays
  seed 0's), then the mean of their probabilities: an ensemble trained in K times the time.
"""
import argparse, contextlib, sys, time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import melanoma_nb.training as T
from melanoma_nb.evaluation import Predictor
from melanoma_nb.data import prepare
from melanoma_nb.dataset import BatchTransform
from melanoma_nb.metrics import binary_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name   # noqa: E402

FIELDS = {'preset': {}, 'ring0.5': dict(ring=0.5), 'fastai_opt': dict(lr=1e-3, weight_decay=0.01, label_smoothing=0.0)}


class ConcatPool(nn.Module):
    "Max and average pooling side by side: (N, C, H, W) -> (N, 2C, 1, 1)."
    def forward(self, x): return torch.cat([x.amax((2, 3), keepdim=True), x.mean((2, 3), keepdim=True)], 1)


def fastai_head(model: nn.Module, hidden: int = 512, p: float = 0.5) -> nn.Module:
    "`model` (a torchvision ResNet) with fastai's head in place of its average pool and linear layer."
    c, n = model.fc.in_features, model.fc.out_features
    model.avgpool = ConcatPool()
    model.fc = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(2 * c), nn.Dropout(p / 2), nn.Linear(2 * c, hidden, bias=False),
                             nn.ReLU(inplace=True), nn.BatchNorm1d(hidden), nn.Dropout(p), nn.Linear(hidden, n, bias=False))
    return model


@contextlib.contextmanager
def patched(head: bool):
    "Inside: `fit` keeps seed 0's validation split whatever the seed, and builds fastai's head when `head`."
    make, split = T.create_model, T.train_val_split
    T.train_val_split = lambda labels, frac, seed, **kw: split(labels, frac, 0, **kw)
    if head: T.create_model = lambda *a, **kw: fastai_head(make(*a, **kw))
    try: yield
    finally: T.create_model, T.train_val_split = make, split


def val_logits(pred, cache, va) -> torch.Tensor:
    "The model's float32 logits on the validation images (`pred`: its `Predictor`)."
    model, tf, out = pred.model.eval(), BatchTransform(pred.mean, pred.std), []
    with torch.no_grad():
        for s in range(0, len(va), 256):
            out.append(model(tf(torch.from_numpy(np.ascontiguousarray(cache.images[va[s:s + 256]])).permute(0, 3, 1, 2))).float())
    return torch.cat(out)


def train(name, recipe, cache, out: Path, head=False):
    t = time.monotonic()
    with patched(head): res = T.fit(recipe, cache, out_dir=out/name, progress=False, verbose=False)
    return res, (time.monotonic() - t) / 60


def show(name, m, epochs, minutes):
    print(f"{name:12s} val acc {m['val_acc']:.3f}  AUC {m['val_auc']:.3f}  sens {m['val_sens']:.3f}  "
          f"spec {m['val_spec']:.3f}  epochs {epochs}  {minutes:5.1f} min", flush=True)


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', required=True); ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--variants', default='preset,head,seeds2,ring0.5,fastai_opt')
    a = ap.parse_args()
    names = a.variants.split(',')
    bad = [v for v in names if not (v in FIELDS or v == 'head' or (v.startswith('seeds') and v[5:].isdigit() and int(v[5:]) >= 1))]
    if bad:
        print(f"recipe_variants: unknown variant(s) {', '.join(bad)}: use head, seedsK (K >= 1) or one of {', '.join(FIELDS)}", file=sys.stderr)
        sys.exit(2)
    base = replace(T.PRESETS['scratch'], budget=None, epochs=a.epochs, precision='fp32')
    cache = prepare(a.data, size=base.size, channels=base.channels, progress=False, verbose=False)
    _, va, _ = T.validation_split(cache, base)
    print(f"On {cpu_name()}: the scratch preset (the earlier cpu preset), {a.epochs} epochs in fp32, validation split of seed 0 ({len(va)} images)")
    spent = {}                                                             # run name -> minutes, trained in this call
    for v in names:
        if v in FIELDS or v == 'head':
            name = 'seed0' if v == 'preset' else v                        # the preset is the first member of seedsK
            res, mins = train(name, replace(base, **FIELDS.get(v, {})), cache, a.out, head=v == 'head'); spent[name] = mins
            show(v, res.metrics, a.epochs, mins)
        else:                                                             # seedsK (checked above)
            probs, total = [], 0.0
            for s in range(int(v[5:])):
                name = f'seed{s}'
                if name in spent: mins = spent[name]                       # trained by an earlier variant of this call
                else: _, mins = train(name, replace(base, seed=s), cache, a.out); spent[name] = mins
                probs.append(val_logits(Predictor.from_file(a.out/name/'model.pt'), cache, va).softmax(1)); total += mins
            m = binary_metrics(torch.stack(probs).mean(0).log(), torch.as_tensor(cache.labels[va]))   # keys val_acc, ...
            show(v, m, f"{len(probs)}x{a.epochs}", total)


if __name__ == '__main__':
    main()
