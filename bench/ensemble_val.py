"""Does an ensemble of the pretrained `cpu` model and the from-scratch `scratch` model pay? Judged on the validation
split only (test/ is never read).

Both runs must come from the same data at the same size with the same split (seed, validation share, copy groups):
the script checks that their checkpoints' data fingerprints are equal. Each model's calibrated p on the validation
images is averaged (the ensemble); each of the three is then scored on all validation images and on those WITHOUT
dark corners (the audit's detector): ROC-AUC, and sensitivity/specificity at a threshold chosen, on the same
validation images, for 90 % sensitivity (as the `cpu` preset chooses its own; optimistic for all three alike).

    python bench/ensemble_val.py --data DATA --runs RUN_A/model.pt RUN_B/model.pt
"""
import argparse, sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name   # noqa: E402
from melanoma_nb.audit import has_dark_corners
from melanoma_nb.data import prepare
from melanoma_nb.evaluation import Predictor
from melanoma_nb.metrics import choose_threshold, metrics
from melanoma_nb.training import validation_split


def scores(y, p, clean, target: float = 0.9) -> dict:
    "AUC on all and on the images without dark corners; sensitivity/specificity there at the `target`-sensitivity threshold."
    t = choose_threshold(y, p, target).threshold
    a, c = metrics(y, p, t), metrics(y[clean], p[clean], t)
    return dict(auc=a['roc_auc'], acc=a['accuracy'], clean_auc=c['roc_auc'], clean_sens=c['sensitivity'],
                clean_spec=c['specificity'], threshold=t)


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', required=True, type=Path)
    ap.add_argument('--runs', nargs=2, required=True, type=Path, metavar='MODEL_PT')
    a = ap.parse_args(argv)
    preds = [Predictor.from_file(f) for f in a.runs]
    if len({(p.size, p.channels) for p in preds}) != 1: sys.exit("ensemble_val: the two models read different inputs")
    if preds[0].fingerprint != preds[1].fingerprint:
        sys.exit("ensemble_val: the two runs were trained on different data or splits (their fingerprints differ)")
    cache = prepare(a.data, size=preds[0].size, channels=preds[0].channels, progress=False, verbose=False)
    _, va, _ = validation_split(cache, preds[0].recipe)
    x = np.asarray(cache.images[va])
    y = (np.asarray(cache.labels)[va] == preds[0].pos).astype(int)
    clean = ~has_dark_corners(x)
    ps = [p.proba(x) for p in preds]
    rows = {f.parent.name: ps[i] for i, f in enumerate(a.runs)}
    rows['mean of both'] = (ps[0] + ps[1]) / 2
    print(f"On {cpu_name()}: validation split of {a.data} ({len(va)} images, {int(clean.sum())} without dark corners)")
    print(f"{'model':28s} {'val acc':>7s} {'AUC':>6s} {'AUC no corners':>14s} {'sens no corners':>15s} {'spec no corners':>15s}")
    for name, p in rows.items():
        s = scores(y, p, clean)
        print(f"{name:28s} {s['acc']:7.3f} {s['auc']:6.3f} {s['clean_auc']:14.3f} {s['clean_sens']:15.3f} "
              f"{s['clean_spec']:15.3f}")


if __name__ == '__main__':
    main()
