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
from melanoma_nb.evaluation import predict_proba, ring_report, ring_table
from melanoma_nb.metrics import metrics, positive_index
from melanoma_nb.training import PRESETS, fit, validation_split


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', required=True)
    ap.add_argument('--preset', default='cpu', choices=sorted(PRESETS))
    ap.add_argument('--ring', type=float, nargs='+', default=[0.0, 0.5])
    ap.add_argument('--budget', type=float, default=None, help='minutes per run (default: the preset\'s)')
    ap.add_argument('--epochs', type=int, default=None, help='fixed epochs instead of a budget (results then do not depend on the load)')
    ap.add_argument('--out', default=None, help='keep each run in OUT/ring-P (default: not kept)')
    a = ap.parse_args(argv)
    base = PRESETS[a.preset]
    cache = prepare(a.data, size=base.size, channels=base.channels, progress=False, verbose=False)
    summary = []
    for ring in a.ring:
        r = base.update(ring=ring, budget=a.budget)
        if a.epochs: r = dataclasses.replace(r, budget=None, epochs=a.epochs)
        t = time.monotonic()
        res = fit(r, cache, out_dir=None if a.out is None else Path(a.out)/f'ring-{ring:g}', progress=False, verbose=False)
        wall = time.monotonic() - t
        meta, pos = res.meta, positive_index(res.meta['classes'], res.meta.get('positive'))
        _, va, _ = validation_split(cache, r)
        def predict(im): return predict_proba(res.model, im, meta['mean'], meta['std'], positive=pos, temperature=meta['temperature'])
        p, y = predict(cache.images[va]), (cache.labels[va] == pos).astype(int)
        m = metrics(y, p, meta['threshold'])
        rep = ring_report(predict, np.asarray(cache.images[va]), y, meta['threshold'], positive=1)
        worst = max(x['called_positive'] for x in rep['ring_added'][1:])
        row = dict(ring=ring, epochs=meta['recipe']['epochs'], kept=meta['epoch'], wall_s=round(wall), val_accuracy=m['accuracy'],
                   val_auc=m['roc_auc'], sens_no_ring=rep['subgroups'].get('no dark corners', {}).get('sensitivity'),
                   ring_added_worst=worst, ring_removed_fill=rep['ring_removed']['fill'], ring_removed_crop=rep['ring_removed']['crop'])
        summary.append(row)
        print(f"\n== ring {ring:g}: {row['epochs']} epochs ({row['wall_s']} s), kept {row['kept']}; validation "
              f"accuracy {m['accuracy']:.4f}, AUC {m['roc_auc']:.4f}, threshold {meta['threshold']:.3f}\n{ring_table(rep)}", flush=True)
    print('\n' + json.dumps(summary, indent=1))


if __name__ == '__main__':
    sys.exit(main())
