#!/usr/bin/env python
"""Run the notebooks the way a fresh Kaggle/Colab session does, as far as that can be simulated without one.

    python tools/simulate_hosted.py                          # every notebook, full-shaped data made from the sample
    python tools/simulate_hosted.py --images ../shared/data/melanoma-dev   # ... made from these class folders
    python tools/simulate_hosted.py --data sample 00_data    # the bundled sample, one notebook
    python tools/simulate_hosted.py --venv /tmp/hosted-venv  # also in a fresh virtualenv without melanoma_nb

What is simulated:

- **the data**: `MELANOMA_DATA` points at a data set root of the Kaggle layout (`train/` and `test/`, each with
  `benign/` and `malignant/`), so every notebook takes its full-size branch (`source != 'sample'`) on real images.
  By default the root is a copy of the bundled sample (200 images: the full-size code on little data, in minutes);
  `--images DIR` makes it from class folders (`DIR/benign`, `DIR/malignant`), 20 % of each class as `test/`.
- **the hosted session** (`--venv`): a new virtualenv holding only what Colab has before the first cell runs (Python,
  PyTorch, Jupyter's kernel), `COLAB_RELEASE_TAG` set and a working folder outside the repository. The first cell of
  each notebook must then install the library itself; `MELANOMA_NB_PIP` points it at this checkout (`file://`), since
  the GitHub URL it uses on Colab cannot be reached here.

What is not: a GPU, the `kagglehub` download (no internet here; 00_data tests that path with a stand-in), the
GitHub install URL, and Kaggle's `/kaggle/input` mount. Each notebook is executed with nbconvert and reported with
its wall time; the executed copies are left in the work folder (printed) to look at. Exit status 1 if any failed.
"""
from __future__ import annotations

import argparse, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
CLASSES = ('benign', 'malignant')


def full_shaped_root(dest: Path, images: Path | None) -> Path:
    "A data set root of the Kaggle layout under `dest`: a copy of the sample, or made from `images/{benign,malignant}`."
    root = dest/'melanoma_cancer_dataset'
    if images is None:
        shutil.copytree(ROOT/'melanoma_nb'/'sample', root, ignore=shutil.ignore_patterns('*.md'))
        return root
    for c in CLASSES:
        files = sorted(p for p in (images/c).iterdir() if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
        if not files: sys.exit(f"{images/c}: no images. --images needs a folder with benign/ and malignant/ inside.")
        for i, f in enumerate(files):
            split = 'test' if i % 5 == 4 else 'train'     # every 5th image, by name: 20 % of each class, fixed
            (root/split/c).mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, root/split/c/f.name)
    return root


def make_venv(path: Path) -> Path:
    "A fresh virtualenv with what a Colab runtime has before the first cell: PyTorch and a Jupyter kernel."
    py = path/'bin'/'python'
    if not py.exists():
        subprocess.run([sys.executable, '-m', 'venv', str(path)], check=True)
        subprocess.run([str(py), '-m', 'pip', 'install', '-q', 'torch', 'torchvision', 'ipykernel', 'nbconvert',
                        'matplotlib'], check=True)
    found = subprocess.run([str(py), '-c', 'import importlib.util as u; print(u.find_spec("melanoma_nb") is None)'],
                           capture_output=True, text=True, check=True, cwd=path).stdout.strip()   # not from ./
    if found != 'True': sys.exit(f"{path} already holds melanoma_nb: give a new --venv folder (or delete this one).")
    return py


def main(argv=None):
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebook names (default: every numbered notebook and troubleshooting)')
    ap.add_argument('--data', default='full', help="'full' (a full-shaped root, the default) or 'sample'")
    ap.add_argument('--images', type=Path, help='class folders to build the full-shaped root from (default: the sample)')
    ap.add_argument('--venv', type=Path, help='run in this new virtualenv, made here, without melanoma_nb')
    ap.add_argument('--work', type=Path, help='work folder (default: a new temporary one)')
    ap.add_argument('--timeout', type=int, default=3600, help='seconds per cell')
    a = ap.parse_args(argv)

    names = a.notebooks or sorted(p.stem for p in NBS.glob('[0-9][0-9]_*.ipynb')) + ['troubleshooting']
    for n in names:
        if not (NBS/f'{n}.ipynb').exists(): sys.exit(f"nbs/{n}.ipynb: no such notebook")
    work = a.work or Path(tempfile.mkdtemp(prefix='melanoma-hosted-'))
    content = work/'content'          # Colab's working folder is /content; the notebooks are opened from GitHub
    content.mkdir(parents=True, exist_ok=True)

    env = {k: v for k, v in os.environ.items() if k not in ('MELANOMA_DATA', 'PYTHONPATH')}
    env.update(MPLBACKEND='Agg', OMP_WAIT_POLICY=env.get('OMP_WAIT_POLICY', 'PASSIVE'),
               MELANOMA_CACHE=str(work/'cache'))
    if a.data == 'sample': env['MELANOMA_DATA'] = 'sample'
    elif a.data == 'full': env['MELANOMA_DATA'] = str(full_shaped_root(work/'data', a.images))
    else: sys.exit(f"--data must be 'full' or 'sample', not {a.data!r}")
    py = sys.executable
    if a.venv:
        py = str(make_venv(a.venv))
        env.update(COLAB_RELEASE_TAG='simulated', MELANOMA_NB_PIP=ROOT.as_uri(), VIRTUAL_ENV=str(a.venv),
                   PATH=f"{a.venv/'bin'}{os.pathsep}{env.get('PATH', '')}")
    print(f"data: {env['MELANOMA_DATA']}\nwork: {content}\npython: {py}" + (" (fresh virtualenv)" if a.venv else ''))

    results = []
    for n in names:
        nb = content/f'{n}.ipynb'
        shutil.copy(NBS/f'{n}.ipynb', nb)
        t0 = time.perf_counter()
        r = subprocess.run([py, '-m', 'nbconvert', '--to', 'notebook', '--execute', '--inplace',
                            f'--ExecutePreprocessor.timeout={a.timeout}', '--ExecutePreprocessor.kernel_name=python3',
                            str(nb)], cwd=content, env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        results.append((n, r.returncode == 0, dt))
        print(f"{'ok  ' if r.returncode == 0 else 'FAIL'} {n:18s} {dt:7.1f} s", flush=True)
        if r.returncode: print('\n'.join('    ' + l for l in r.stderr.strip().splitlines()[-25:]), flush=True)
    if a.venv:
        where = subprocess.run([py, '-c', 'import melanoma_nb; print(melanoma_nb.__file__)'], capture_output=True,
                               text=True, env=env, cwd=content).stdout.strip()
        print(f"melanoma_nb in the virtualenv after the run: {where or 'not installed'}")
        if not where.startswith(str(a.venv)):     # the kernel was another Python: nothing here was tested
            results.append(('install cell (into the virtualenv)', False, 0.0))
    failed = [n for n, ok, _ in results if not ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed ({sum(d for *_, d in results):.0f} s)")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
