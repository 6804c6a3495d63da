"""melanoma-app speed: server-side time per image and browser time from upload to result (with its map overlay: Grad-CAM or occlusion, as the checkpoint says).

The model is the `cpu` preset's (ResNet-18 at 96 px, RGB); untrained weights run at the same speed as trained ones,
so by default an untrained checkpoint is used (or --model PATH). Images: 300x300 JPEGs of the bundled sample.
The target (issue 18): the first result within 2 s of the upload on a 2-core CPU.

    python bench/bench_app.py [--model PATH] [--reps 10] [--no-browser]
"""
import argparse, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')


def cpu_name() -> str:
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        name = next(l.split(':', 1)[1].strip() for l in out.splitlines() if l.startswith('Model name'))
    except Exception: name = platform.processor() or 'unknown CPU'
    return f"{name}, {os.cpu_count()} logical cores"


def untrained_cpu_checkpoint(path: Path) -> Path:
    "A checkpoint of the `cpu` preset's architecture with untrained weights (same speed as a trained one)."
    import torch
    from melanoma_nb.cnn import create_model
    from melanoma_nb.dataset import norm_stats
    from melanoma_nb.training import PRESETS
    from melanoma_nb.checkpoint import save_checkpoint
    r = PRESETS['cpu']
    torch.manual_seed(0)
    model = create_model(r.arch, in_chans=r.channels)
    mean, std = norm_stats(r.channels)
    meta = dict(arch=r.arch, in_chans=r.channels, size=r.size, mean=list(mean), std=list(std),
                classes=['benign', 'malignant'], threshold=0.5, recipe=r.to_dict(),
                metrics={'val_sens': float('nan'), 'val_spec': float('nan'), 'n_train': 0, 'n_val': 0}, epoch=0)
    return save_checkpoint(path, model, meta)


DONE = """name => { const i = document.querySelector(`[data-name="${name}"] img.mn-overlay`);
                   return !!(i && i.complete && i.naturalWidth > 0); }"""


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument('--model', help="a model.pt (default: an untrained checkpoint of the 'cpu' preset's model)")
    ap.add_argument('--reps', type=int, default=10)
    ap.add_argument('--no-browser', action='store_true')
    args = ap.parse_args(argv)
    from melanoma_nb import app as A
    from melanoma_nb.data import sample_root
    tmp = Path(tempfile.mkdtemp(prefix='bench-app-'))
    try:
        model = Path(args.model) if args.model else untrained_cpu_checkpoint(tmp/'model.pt')
        an = A.Analyser.from_file(model)
        from melanoma_nb.evaluation import Predictor
        pred = Predictor.from_file(model)                # what the model takes, read once
        imgs = sorted((sample_root()/'test').rglob('*.jpg'))
        print(f"CPU: {cpu_name()}; torch threads {__import__('torch').get_num_threads()}")
        print(f"model: {pred.arch} at {pred.size} px, {pred.channels} channels ({model.name}); "
              f"images {A.read_upload(imgs[0], 8, 3)[1].shape[1]}x{A.read_upload(imgs[0], 8, 3)[1].shape[0]} JPEG")
        for f in imgs[:3]: an.analyse(*A.read_upload(f, pred.size, pred.channels))   # warm-up
        ts = []
        for f in (imgs * 2)[:max(args.reps, 20)]:
            t0 = time.perf_counter()
            r = an.analyse(*A.read_upload(f, pred.size, pred.channels), name=f.name)
            A.result_html(r, an)
            ts.append(time.perf_counter() - t0)
        print(f"server side, per image (read, p, the checkpoint's map, overlay, page HTML): median {1000 * statistics.median(ts):.0f} ms, "
              f"max {1000 * max(ts):.0f} ms over {len(ts)} images")
        if args.no_browser: return 0
        import shutil as sh
        from playwright.sync_api import sync_playwright
        chromium = sh.which('chromium') or sh.which('chromium-browser')
        if chromium is None: sys.exit("bench_app: no chromium: apt-get install chromium (or --no-browser)")
        t0 = time.perf_counter(); demo = A.serve(an); t_start = time.perf_counter() - t0
        try:
            with sync_playwright() as pw:
                b = pw.chromium.launch(executable_path=chromium, args=['--no-sandbox', '--disable-gpu'])
                page = b.new_page(viewport={'width': 1000, 'height': 900})
                page.goto(demo.local_url, wait_until='domcontentloaded')
                page.get_by_text('Not a medical device.').wait_for(timeout=60_000)
                up = page.locator('#mn-upload input[type=file]')
                bt = []
                for k in range(args.reps + 1):
                    f = tmp/f'lesion_{k}.jpg'; shutil.copy(imgs[k % len(imgs)], f)
                    t0 = time.perf_counter()
                    up.set_input_files([str(f)])
                    page.wait_for_function(DONE, arg=f.name, timeout=60_000, polling=10)
                    if k: bt.append(time.perf_counter() - t0)    # the first is a warm-up
                b.close()
        finally: A.close_app(demo)
        print(f"app start (build + launch): {t_start:.2f} s")
        print(f"browser, upload to first result with its overlay (Chromium): median {1000 * statistics.median(bt):.0f} ms, "
              f"max {1000 * max(bt):.0f} ms over {len(bt)} uploads (target: 2000 ms)")
        return 0
    finally: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__': sys.exit(main())
