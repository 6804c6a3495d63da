"""Validation accuracy of the step variants of bench_step.py: does a faster step keep the `cpu` preset's accuracy?

Every training step is the library's, `Trainer.one_batch` (bench/_common.py builds the Trainer): on-device
augmentation (with the recipe's dark ring), class-weighted label-smoothed loss in the chosen precision (fp32, or bf16
autocast with --bf16), gradient clipping, AdamW with the same decay groups, one schedule step. Around it this script
keeps what the Trainer has no setting for: the validation split of train/ stored in the pack (the `cpu` preset's
group-aware one), the class weights of that split, one one-cycle over all planned steps, an image size per epoch
(progressive resizing: e.g. `--sizes 64x5,96x5`, through the Trainer's training transform replaced by one whose crop is
sampled at the epoch's size), one of bench_step's architectures (`--arch`: a library arch such as resnet18w32, the
`cpu` preset's, or bench_step's r18_3stage / r18_wNN, which replace the Trainer's network), its own data order, and
it reports validation accuracy/AUC per epoch, plus at the end an EMA of the weights and 8-way flip/rotate TTA.

The images come packed by `--pack` (the 96 px cache's train/ split re-encoded as JPEG q95, with the validation
split of the `cpu` preset computed here), so the runs can happen on another machine:
  python bench/speed_accuracy.py --pack /work/data/melanoma_cancer_dataset   # writes .cache/mel96.npz (train/ only)
  python bench/speed_accuracy.py --arch resnet18w32 --sizes 96x10 --seed 0 [--device cuda]
Lower sizes are made from the 96 px images on the device: the training crop is sampled straight at the lower size
(affine_grid's output size), validation images are area-downsampled. `--limit N`: a smoke test on N train and N
validation images.
"""
import argparse, copy, json, math, os, sys, time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import build                  # noqa: E402
from _common import trainer                   # noqa: E402
from melanoma_nb.data import ImageCache
from melanoma_nb.dataset import BatchTransform, norm_stats
from melanoma_nb.metrics import binary_metrics
from melanoma_nb.training import PRESETS, epoch_seed, loss_weights, seed_everything

PACK = Path(os.environ.get('MEL_PACK', Path(__file__).resolve().parents[1]/'.cache'/'mel96.npz'))


def pack(data):
    import cv2
    from melanoma_nb.data import scan, build_cache
    from melanoma_nb.training import validation_split
    import tempfile, shutil
    idx = scan(data)
    keep = [i for i, s in enumerate(idx.splits) if s == 'train']   # never touch test/
    with tempfile.TemporaryDirectory() as d:
        (Path(d)/'data').mkdir(); (Path(d)/'data'/'train').symlink_to(Path(data).resolve()/'train')
        c = build_cache(scan(Path(d)/'data'), 96, 3, cache_dir=Path(d)/'c', progress=False)
        tr, va, _ = validation_split(c, PRESETS['cpu'])
        enc = [cv2.imencode('.jpg', np.ascontiguousarray(c.images[i][..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
               for i in range(len(c))]
        PACK.parent.mkdir(exist_ok=True)
        np.savez(PACK, blob=np.frombuffer(b''.join(enc), np.uint8), lens=np.array([len(e) for e in enc]),
                 labels=np.asarray(c.labels), tr=tr, va=va)
    print(f"wrote {PACK} ({len(keep)} train/ images)")


def load(dev):
    import cv2
    z = np.load(PACK)
    off = np.concatenate([[0], np.cumsum(z['lens'])])
    imgs = np.stack([cv2.imdecode(z['blob'][off[i]:off[i + 1]], cv2.IMREAD_COLOR)[..., ::-1] for i in range(len(z['lens']))])
    x = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).contiguous().to(dev)   # uint8 NCHW
    y = torch.from_numpy(z['labels'].astype(np.int64)).to(dev)
    cache = ImageCache(imgs, z['labels'].astype(np.int64), np.array(['train'] * len(imgs)),
                       [f'{PACK.name}/{i:06d}.jpg' for i in range(len(imgs))], ['benign', 'malignant'], imgs.shape[1],
                       imgs.shape[3], [], str(PACK), 'split', 'pack')    # for the Trainer (its shape, labels and classes)
    return x, y, torch.from_numpy(z['tr']).to(dev), torch.from_numpy(z['va']).to(dev), cache


class SizedTransform(BatchTransform):
    "BatchTransform whose training crop is sampled straight at `out` pixels (one grid_sample: crop + resize)."
    out = None
    def _geometry(self, x, g):
        n, c, h, w = x.shape; s = self.out or h
        grid = F.affine_grid(self.affine(n, g, x.device), [n, c, s, s], align_corners=False)
        return F.grid_sample(x, grid, mode='bilinear', padding_mode='reflection', align_corners=False)


def tta_views(x):
    for k in range(4):
        r = torch.rot90(x, k, (2, 3)); yield r; yield r.flip(3)


@torch.no_grad()
def evaluate(net, x, y, va, tf, size, bf16, dev, tta=False, bs=256):
    net.eval(); outs = []
    for s in range(0, len(va), bs):
        xb = tf(x[va[s:s + bs]])
        if size != xb.shape[-1]: xb = F.interpolate(xb, size=(size, size), mode='area')
        xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            if tta: outs.append(torch.stack([F.softmax(net(v).float(), 1) for v in tta_views(xb)]).mean(0).log())
            else: outs.append(net(xb).float())
    net.train()
    return binary_metrics(torch.cat(outs), y[va].cpu(), 1)


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n')[0])
    ap.add_argument('--pack', metavar='DATA'); ap.add_argument('--arch', default=PRESETS['cpu'].arch)
    ap.add_argument('--sizes', default='96x10', help='SIZExEPOCHS,... in order, e.g. 64x5,96x5')
    ap.add_argument('--bf16', action='store_true'); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--ema', type=float, default=0.999, help='EMA decay per step (evaluated at the end)')
    ap.add_argument('--tag', default=''); ap.add_argument('--limit', type=int, help='smoke test: this many train and val images')
    a = ap.parse_args()
    if a.pack: return pack(a.pack)
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False; torch.backends.cudnn.allow_tf32 = False   # fp32 like the CPU
    plan = [int(s) for part in a.sizes.split(',') for s, n in [part.split('x')] for _ in range(int(n))]
    x, y, tr, va, cache = load(dev)
    if a.limit: tr, va = tr[torch.randperm(len(tr))[:a.limit].to(dev)], va[torch.randperm(len(va))[:a.limit].to(dev)]
    base = PRESETS['cpu']
    r = base.update(seed=a.seed, lr=base.lr * a.batch / base.batch_size, batch_size=a.batch, precision='bf16' if a.bf16 else 'fp32')
    seed_everything(r.seed)
    net = build(a.arch)                                # None: a library architecture, built by the Trainer
    if net is None: r = r.update(arch=a.arch)
    nb = len(tr) // a.batch
    t = trainer(r, cache, device=dev, net=net, steps=len(plan) * nb)   # one one-cycle over all planned steps
    mean, std = norm_stats(3)
    t.tf_train = tf = SizedTransform(mean, std, train=True, ring=r.ring if r.augment else 0.0).to(dev)
    tfv = BatchTransform(mean, std).to(dev)
    t.weight = loss_weights(r, np.asarray(cache.labels), tr.cpu().numpy(), 2, dev)   # of the pack's split, not the Trainer's
    net = t.net
    ema = torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(a.ema), use_buffers=True)
    hist, t0, final = [], time.time(), plan[-1]
    for e, size in enumerate(plan):
        g = torch.Generator(device=dev).manual_seed(epoch_seed(r.seed, e))
        perm = tr[torch.randperm(len(tr), generator=torch.Generator().manual_seed(epoch_seed(r.seed, e))).to(dev)]
        tf.out = size; t.model.train(); t.epoch_i = e
        for b in range(nb):
            ib = perm[b * a.batch:(b + 1) * a.batch]
            t.step_i = b
            t.one_batch(x[ib], y[ib], g)
            ema.update_parameters(net)
        m = evaluate(net, x, y, va, tfv, final, a.bf16, dev)
        hist.append({'epoch': e + 1, 'size': size, 'acc': round(m['val_acc'], 4), 'auc': round(m['val_auc'], 4)})
        print(json.dumps({**hist[-1], 'seconds': round(time.time() - t0, 1)}), file=sys.stderr, flush=True)
    best = max(hist, key=lambda h: h['auc'])
    res = dict(tag=a.tag, arch=a.arch, sizes=a.sizes, bf16=a.bf16, seed=a.seed, batch=a.batch, epochs=len(plan),
               n_train=nb * a.batch, n_val=len(va), final=hist[-1], best_auc_epoch=best,
               ema={k: round(v, 4) for k, v in evaluate(ema.module, x, y, va, tfv, final, a.bf16, dev).items() if k in ('val_acc', 'val_auc')},
               tta=({k: round(v, 4) for k, v in evaluate(net, x, y, va, tfv, final, a.bf16, dev, tta=True).items() if k in ('val_acc', 'val_auc')}),
               seconds=round(time.time() - t0, 1), hist=hist)
    print(json.dumps(res), flush=True)


if __name__ == '__main__': main()
