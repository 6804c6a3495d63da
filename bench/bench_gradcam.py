"""CPU latency of melanoma_nb's Grad-CAM / Grad-CAM++ against pytorch-grad-cam's, side by side in one run.

ResNet-18 (random weights: the weights do not change the work), a batch of 8 images at 224x224, one target class
per image, the default target layer (the last block of layer 4). The two implementations are timed alternately,
after warm-up calls, and the median of the repeats is reported with the ratio (pytorch-grad-cam / ours: above 1
means ours is faster).

    python bench/bench_gradcam.py [--repeats 15] [--batch 8] [--size 224] [--threads N]
"""
import argparse, os, statistics, time
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # idle OpenMP threads sleep (see 07_training, "CPU settings"); set before torch

import torch
from pytorch_grad_cam import GradCAM as PGradCAM, GradCAMPlusPlus as PGradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from melanoma_nb.cnn import cam_layer, create_model
from melanoma_nb.gradcam import GradCAM, GradCAMPlusPlus


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=15)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = create_model('resnet18', in_chans=3).eval()
    x = torch.randn(a.batch, 3, a.size, a.size)
    targets = [i % 2 for i in range(a.batch)]
    print(f"ResNet-18, batch {a.batch} at {a.size}x{a.size}, CPU, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, median of {a.repeats} alternating repeats")
    for name, ours_cls, theirs_cls in [('Grad-CAM', GradCAM, PGradCAM), ('Grad-CAM++', GradCAMPlusPlus, PGradCAMPlusPlus)]:
        ours = ours_cls(model)
        theirs = theirs_cls(model=model, target_layers=[cam_layer(model)])
        run_ours = lambda: ours(x, targets)
        run_theirs = lambda: theirs(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
        for f in (run_ours, run_theirs, run_ours, run_theirs): f()            # warm-up
        t_ours, t_theirs = [], []
        for i in range(a.repeats):
            for f, ts in ((run_ours, t_ours), (run_theirs, t_theirs))[::1 if i % 2 == 0 else -1]:
                t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
        diff = (run_ours().cpu() - torch.from_numpy(run_theirs())).abs().max().item()
        ours.close(); theirs.activations_and_grads.release()
        mo, mt = statistics.median(t_ours) * 1e3, statistics.median(t_theirs) * 1e3
        print(f"{name:11s} melanoma_nb {mo:8.1f} ms   pytorch-grad-cam {mt:8.1f} ms   "
              f"ratio (theirs/ours) {mt / mo:5.2f}x   max |diff| {diff:.1e}")


if __name__ == '__main__':
    main()
