"""Choose the share of training images given a synthetic dark ring (`Recipe.ring`) on VALIDATION, never on test/.

For each value of --ring, trains the `cpu` preset (or --preset) with the library's own `fit` on train/ of the data
set, then reports on its group-aware validation split: accuracy and ROC-AUC, the metrics with and without dark
corners, the share of benign validation images called malignant once a black ring is added (several radii and
softnesses), and the share of malignant validation images with dark corners whose call changes once the ring is
filled or cropped away (`evaluation.ring_report`).

    python bench/ring_choice.py --data /path/to/melanoma_cancer_dataset --ring 0.5 0.8 --epochs 8 --out /tmp/ring
"""
import argparse, dataclasses, json, sys, time
from pathlib import Path

import numpy as np

from melanoma_nb.data import prepare
from melanoma_nb.evaluation import Predictor, ring_report, ring_table
from melanoma_nb.metrics import metrics
from melanoma_nb.training import PRESETS, Recipe, fit, validation_split


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n')[0])
    ap.add_argument('--data', required=True)
    ap.add_argument('--preset', default='cpu', choices=sorted(PRESETS))
    ap.add_argument('--ring', type=float, nargs='+', default=[0.0, 0.5])
    ap.add_argument('--budget', type=float, default=None, help='minutes per run (default: the preset\'s)')
    ap.add_argument('--epochs', type=int, default=None, help='fixed epochs instead of a budget (results then do not depend on the load)')
    ap.add_argument('--out', default=None, help='keep each run in OUT/ring-P (default: not kept)')
    ap.add_argument('--model', nargs='+', default=None, help='report these trained checkpoints instead of training')
    a = ap.parse_args(argv)
    if a.model: return report_models(a)
    base = PRESETS[a.preset]
    cache = prepare(a.data, size=base.size, channels=base.channels, progress=False, verbose=False)
    summary = []
    for ring in a.ring:
        r = base.update(ring=ring, budget=a.budget)
        if a.epochs: r = dataclasses.replace(r, budget=None, epochs=a.epochs)
        t = time.monotonic()
        res = fit(r, cache, out_dir=None if a.out is None else Path(a.out)/f'ring-{ring:g}', progress=False, verbose=False)
        wall = time.monotonic() - t
        row = validation_report(Predictor(res.model, res.meta), cache, f'ring {ring:g}')
        summary.append(dict(ring=ring, wall_s=round(wall), **row))
    print('\n' + json.dumps(summary, indent=1))


def validation_report(pred, cache, name: str) -> dict:
    "Print and return the validation figures of one trained model (a `Predictor`; its own recipe's validation split)."
    r, t = pred.recipe, pred.threshold()
    _, va, _ = validation_split(cache, r)
    p, y = pred.proba(cache.images[va]), (cache.labels[va] == pred.pos).astype(int)
    m = metrics(y, p, t)
    rep = ring_report(pred.proba, np.asarray(cache.images[va]), y, t, positive=1)
    row = dict(epochs=r.epochs, kept=pred.epoch, val_accuracy=m['accuracy'], val_auc=m['roc_auc'],
               sens_no_ring=rep['subgroups'].get('no dark corners', {}).get('sensitivity'),
               ring_added_worst=max(x['called_positive'] for x in rep['ring_added'][1:]),
               ring_flipped_worst=max(x['flipped'] for x in rep['ring_added'][1:]),
               ring_removed_fill=rep['ring_removed']['fill'], ring_removed_crop=rep['ring_removed']['crop'])
    print(f"\n== {name}: {r.epochs} epochs, kept {pred.epoch}; validation accuracy {m['accuracy']:.4f}, "
          f"AUC {m['roc_auc']:.4f}, threshold {t:.3f}\n{ring_table(rep, pred.names)}", flush=True)
    return row


def report_models(a):
    rows = []
    for f in a.model:
        pred = Predictor.from_file(f)
        cache = prepare(a.data, size=pred.size, channels=pred.channels, progress=False, verbose=False)
        rows.append(dict(model=f, **validation_report(pred, cache, f)))
    print('\n' + json.dumps(rows, indent=1))


if __name__ == '__main__':
    sys.exit(main())
