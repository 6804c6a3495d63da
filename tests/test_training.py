"""What can happen while training. A loss that turns non-finite, SIGINT/SIGTERM/SIGKILL during a run
(then --resume), a resume with another model, a full disk or an unwritable output folder.

Interrupted runs are real `melanoma-train` processes. To strike at an exact moment instead of racing a timer, the
interrupted run is started through tests/fault_callbacks.py, whose training callback plants a pause (mid-epoch, or
half-way through writing last.pt) and changes nothing else; the uninterrupted and the resumed runs are the plain console script."""
import errno, hashlib, json, os, shutil, signal, subprocess, sys, tempfile, textwrap, time
from pathlib import Path

import numpy as np
import pytest
import torch

import melanoma_nb.training as T
from melanoma_nb.training import (Callback, Checkpoints, NonFiniteLossError, Recipe, RecipeError, check_output_dir, fit,
                                  load_resume_state)
from melanoma_nb.checkpoint import CheckpointError, OutputError, atomic_write, load_checkpoint
from conftest import assert_user_error, script_cmd

HERE = Path(__file__).parent
EPOCHS = 3

class StopAfter(Callback):
    "Ctrl-C once epoch `n`'s files are written."
    def __init__(self, n: int = 1): self.n = n
    def after_epoch(self, t):
        if t.epoch_i + 1 == self.n: raise KeyboardInterrupt

def train_args(sample, out, cache):
    return ['--data', sample, '--arch', 'cnn', '--size', 32, '--epochs', EPOCHS, '--seed', 0, '--device', 'cpu', '--precision', 'fp32',
            '--no-progress', '--cache', cache, '--out', out]

def digest(p: Path) -> str: return hashlib.sha256(p.read_bytes()).hexdigest()

def temp_files(d: Path) -> list: return sorted(p.name for p in d.iterdir() if p.name.endswith('.tmp') or p.name.startswith('.'))

def same_weights(a: Path, b: Path) -> bool:
    sa, sb = torch.load(a, weights_only=True)['state_dict'], torch.load(b, weights_only=True)['state_dict']
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

# --------------------------------------------------------------------------------------------------------------------
# A non-finite loss: training stops with a clear error; the last good checkpoint is intact.

def test_nonfinite_loss_melanoma_train(tmp_path, run_script, sample):
    "An absurd learning rate from the command line: one error line, exit status 1 (the optimisation failed), no traceback."
    r = run_script('melanoma-train', *train_args(sample, tmp_path/'run', tmp_path/'cache'), '--lr', '1e30')
    assert_user_error(r, 'melanoma-train', 'the training loss became nan', 'lower learning rate', status=1)
    assert not (tmp_path/'run'/'model.pt').exists()

def test_nonfinite_validation_outputs_are_a_clear_error(cache32):
    "The loss can stay finite (batch norm renormalises each batch) while the weights overflow: the validation outputs are checked too."
    with pytest.raises(NonFiniteLossError, match=r"validation images became NaN/inf in epoch \d"):
        fit(Recipe(arch='cnn', size=32, epochs=3, seed=0, lr=1e3), cache32, progress=False, verbose=False)

# --------------------------------------------------------------------------------------------------------------------
# SIGINT / SIGTERM / SIGKILL during training: the last checkpoint is intact; --resume reaches the same final history.

@pytest.fixture(scope='module')
def baseline(tmp_path_factory, sample, cli_env):
    "An uninterrupted run of the plain console script."
    d = tmp_path_factory.mktemp('baseline')
    r = subprocess.run(script_cmd('melanoma-train') + [str(a) for a in train_args(sample, d/'run', d/'cache')],
                       capture_output=True, text=True, env=cli_env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len((d/'run'/'history.csv').read_text().splitlines()) == EPOCHS + 1
    return d/'run'

def interrupt(tmp: Path, sample, env, mode: str, sig: int):
    "Start melanoma-train with a pause at `mode`, wait for the pause, send `sig`; -> (out dir, returncode, stderr)."
    out, marker = tmp/'run', tmp/'paused'
    env = {**env, 'FAULT': mode, 'FAULT_MARKER': str(marker)}
    with open(tmp/'stdout.txt', 'w') as so, open(tmp/'stderr.txt', 'w') as se:
        p = subprocess.Popen([sys.executable, str(HERE/'fault_callbacks.py')] + [str(a) for a in train_args(sample, out, tmp/'cache')],
                             stdout=so, stderr=se, env=env)
        t0 = time.time()
        while not marker.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
        if not marker.exists():
            p.kill(); p.wait()
            pytest.fail(f"the run never reached its pause ({mode}): exit {p.returncode}\n{(tmp/'stderr.txt').read_text()[-3000:]}")
        p.send_signal(sig)
        try: rc = p.wait(timeout=120)
        except subprocess.TimeoutExpired: p.kill(); p.wait(); pytest.fail(f'signal {sig} did not stop the run')
    return out, rc, (tmp/'stderr.txt').read_text()

def check_epoch1_state(out: Path, baseline: Path):
    "What an interruption in epoch 2 must leave: epoch 1's resume state, model and history, whole and loadable."
    assert load_resume_state(out)['epoch'] == 1
    model, meta = load_checkpoint(out/'model.pt')
    assert meta['epoch'] == 1
    hist = (out/'history.csv').read_text().splitlines()
    assert hist == (baseline/'history.csv').read_text().splitlines()[:2]       # header + epoch 1, same numbers
    assert not (out/'metrics.json').exists()

def resume_and_compare(out: Path, tmp: Path, sample, run_script, baseline: Path):
    r = run_script('melanoma-train', *train_args(sample, out, tmp/'cache'), '--resume')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Resuming' in r.stdout and 'after epoch 1 of 3' in r.stdout, r.stdout
    assert (out/'history.csv').read_bytes() == (baseline/'history.csv').read_bytes()
    assert same_weights(out/'model.pt', baseline/'model.pt')
    strip = lambda p: {k: v for k, v in json.loads(p.read_text()).items() if k != 'seconds'}
    assert strip(out/'metrics.json') == strip(baseline/'metrics.json')
    assert not (out/'last.pt').exists()

@pytest.mark.slow
@pytest.mark.parametrize('mode, sig', [('mid-epoch', signal.SIGTERM), ('mid-write', signal.SIGINT)],
                         ids=['SIGTERM-mid-epoch', 'SIGINT-mid-write'])
def test_signal_then_resume(mode, sig, tmp_path, sample, cli_env, run_script, baseline):
    out, rc, err = interrupt(tmp_path, sample, cli_env, mode, sig)
    assert rc == 130, err[-3000:]
    assert 'Traceback' not in err and 'melanoma-train: interrupted' in err, err[-3000:]
    assert 'Interrupted in epoch 2' in err and f"{out/'last.pt'} holds the state after epoch 1" in err and '--resume' in err, err
    check_epoch1_state(out, baseline)
    assert temp_files(out) == []                       # the half-written temporary file was removed
    resume_and_compare(out, tmp_path, sample, run_script, baseline)

@pytest.mark.slow
def test_sigkill_mid_write_then_resume(tmp_path, sample, cli_env, run_script, baseline):
    "SIGKILL cannot be caught: only the atomic writes protect the files; a kill mid-write leaves last.pt as it was."
    out, rc, err = interrupt(tmp_path, sample, cli_env, 'mid-write', signal.SIGKILL)
    assert rc == -signal.SIGKILL
    stale = [n for n in temp_files(out) if n.startswith('.last.pt.')]    # the kill really landed inside the write
    assert len(stale) == 1 and 0 < (out/stale[0]).stat().st_size < (out/'last.pt').stat().st_size * 3 // 4
    check_epoch1_state(out, baseline)
    resume_and_compare(out, tmp_path, sample, run_script, baseline)

# --------------------------------------------------------------------------------------------------------------------
# Resuming with another model than the one in last.pt: an error naming both.

def test_resume_with_another_architecture(cache32, tmp_path):
    out = tmp_path/'run'
    with pytest.raises(KeyboardInterrupt):
        fit(Recipe(arch='cnn', size=32, epochs=2), cache32, out_dir=out, progress=False, verbose=False, cbs=[StopAfter(1)])
    with pytest.raises(RecipeError) as ei:
        fit(Recipe(arch='resnet18', size=32, epochs=2), cache32, out_dir=out, resume=True, progress=False, verbose=False)
    msg = str(ei.value)
    assert str(out/'last.pt') in msg and "arch='cnn' (saved) vs 'resnet18' (now)" in msg, msg
    assert load_resume_state(out)['epoch'] == 1                   # the refused resume changed nothing

# --------------------------------------------------------------------------------------------------------------------
# A full disk or an unwritable output folder: a clear error before training starts where it can be known, otherwise
# at the write; never a half-written file.

def test_output_path_is_a_file(tmp_path, run_script, sample):
    "Real, as root too: a file where the run folder must be."
    f = tmp_path/'taken'; f.write_text('precious')
    out, phrase = f, 'is a file'
    args = train_args(sample, out, tmp_path/'cache')
    r = run_script('melanoma-train', *args)
    assert_user_error(r, 'melanoma-train', str(out), phrase)
    assert 'Training cnn' not in r.stdout and 'epoch' not in r.stdout      # refused before training started
    assert f.read_text() == 'precious'

def _without_root_powers() -> list:
    "A command prefix that makes root obey file permissions (drops CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH); [] if not root."
    if os.geteuid() != 0: return []
    if shutil.which('setpriv') is None: pytest.skip('running as root without setpriv: permissions cannot be enforced')
    return ['setpriv', '--bounding-set', '-dac_override,-dac_read_search']

def test_unwritable_folder_refused_before_training(sample, cli_env, tmp_path):
    """A folder without write permission (0o555). Root ignores permissions, so as root the command runs with the
    capabilities that let it do so dropped (setpriv); as another user it runs as it is."""
    ro, cache = tmp_path/'readonly', tmp_path/'cache'
    ro.mkdir(); ro.chmod(0o555)
    cmd = _without_root_powers() + script_cmd('melanoma-train')
    try:
        r = subprocess.run(cmd + [str(a) for a in train_args(sample, ro/'run', cache)],
                           capture_output=True, text=True, env=cli_env, timeout=300)
        assert_user_error(r, 'melanoma-train', str(ro/'run'), 'cannot create the output folder', 'Permission denied')
        assert 'epoch' not in r.stdout and list(ro.iterdir()) == []
    finally: ro.chmod(0o755)

def test_unwritable_existing_folder_refused(tmp_path):
    "The folder exists but cannot be written: the probe write fails, before any training (library, same setup)."
    ro = tmp_path/'run'; ro.mkdir(); ro.chmod(0o555)
    code = f"from melanoma_nb.training import check_output_dir; check_output_dir({str(ro)!r})"
    try:
        r = subprocess.run(_without_root_powers() + [sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and 'OutputError' in r.stderr and 'cannot write in the output folder' in r.stderr, r.stderr[-2000:]
        assert list(ro.iterdir()) == []
    finally: ro.chmod(0o755)

def test_output_folder_under_a_file(tmp_path):
    f = tmp_path/'taken'; f.write_text('precious')
    with pytest.raises(OutputError, match='cannot create the output folder'): check_output_dir(f/'run')
    assert f.read_text() == 'precious'

def _can_mount() -> bool:
    if shutil.which('unshare') is None or os.geteuid() != 0: return False
    d = tempfile.mkdtemp()
    try: return subprocess.run(['unshare', '-m', 'mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', d],
                               capture_output=True, timeout=30).returncode == 0
    finally: os.rmdir(d)

needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and `unshare -m` to mount a small tmpfs "
                                 "(the simulated tests below still run)")

def in_tmpfs(mnt: Path, opts: str, cmd: list, env, timeout=300):
    "Run `cmd` in a private mount namespace where `mnt` is a fresh tmpfs (-o opts); the mount vanishes with it."
    sh = 'mount -t tmpfs -o "$MNT_OPTS" tmpfs "$MNT" || exit 99; "$@"; rc=$?; echo "LEFT:$(ls -A "$MNT" | tr "\\n" " ")|$(ls -A "$MNT/run" 2>/dev/null | tr "\\n" " ")"; exit $rc'
    return subprocess.run(['unshare', '-m', 'sh', '-c', sh, 'sh', *map(str, cmd)], capture_output=True, text=True,
                          env={**env, 'MNT': str(mnt), 'MNT_OPTS': opts}, timeout=timeout)

@needs_mount
def test_full_disk_refused_before_training(tmp_path, sample, cli_env):
    "A real 1 MiB file system: the run needs more for its checkpoints, so it stops before the first epoch."
    mnt = tmp_path/'mnt'; mnt.mkdir()
    r = in_tmpfs(mnt, 'size=1m', script_cmd('melanoma-train') + train_args(sample, mnt/'run', tmp_path/'cache'), cli_env)
    assert r.returncode != 99, r.stderr
    assert_user_error(r, 'melanoma-train', str(mnt/'run'), 'MiB free', 'Free some space or choose another folder')
    assert 'epoch' not in r.stdout.replace('LEFT:', '')
    assert r.stdout.strip().splitlines()[-1].strip() == 'LEFT:run |', r.stdout     # the probe file was removed

@needs_mount
def test_readonly_filesystem_refused_before_training(tmp_path, sample, cli_env):
    "A real read-only file system (refuses root too)."
    mnt = tmp_path/'mnt'; mnt.mkdir()
    r = in_tmpfs(mnt, 'ro,size=1m', script_cmd('melanoma-train') + train_args(sample, mnt/'run', tmp_path/'cache'), cli_env)
    assert r.returncode != 99, r.stderr
    assert_user_error(r, 'melanoma-train', str(mnt/'run'), 'cannot create the output folder', 'Read-only file system')

@needs_mount
def test_full_disk_at_the_write_keeps_the_old_file(tmp_path, cli_env):
    "A real ENOSPC in the middle of atomic_write: OutputError, the previous file intact, no temporary file left."
    mnt = tmp_path/'mnt'; mnt.mkdir()
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from melanoma_nb.checkpoint import atomic_write, OutputError
        p = Path({str(mnt)!r})/'model.pt'
        atomic_write(p, lambda f: f.write(b'old' * 100_000))               # 300 kB: fits
        try: atomic_write(p, lambda f: f.write(b'new' * 1_000_000)); raise SystemExit('no error on a full disk')
        except OutputError as e: print('ERROR:', e)
        assert p.read_bytes() == b'old' * 100_000, 'the old file was damaged'
        assert os.listdir(p.parent) == ['model.pt'], os.listdir(p.parent)
        print('INTACT')
    """)
    r = in_tmpfs(mnt, 'size=1m', [sys.executable, '-c', code], cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'INTACT' in r.stdout and 'No space left on device' in r.stdout and 'previous version of the file' in r.stdout

def test_atomic_write_enospc_simulated(tmp_path):
    "Simulated: the writer raises OSError(ENOSPC) after writing part of the data (what a full disk does)."
    p = tmp_path/'model.pt'; p.write_bytes(b'old')
    def half_then_full(f):
        f.write(b'n' * 10_000); raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OutputError) as ei: atomic_write(p, half_then_full)
    assert str(p) in str(ei.value) and 'No space left on device' in str(ei.value) and 'unchanged' in str(ei.value)
    assert p.read_bytes() == b'old' and os.listdir(tmp_path) == ['model.pt']
    def interrupted(f): f.write(b'n' * 10_000); raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): atomic_write(p, interrupted)           # Ctrl-C mid-write: same guarantee
    assert p.read_bytes() == b'old' and os.listdir(tmp_path) == ['model.pt']
    with pytest.raises(OutputError): atomic_write(tmp_path/'new.bin', half_then_full)  # no old file: none appears
    assert os.listdir(tmp_path) == ['model.pt']

def test_low_disk_space_simulated_refused_before_training(cache32, tmp_path, monkeypatch):
    "Simulated: the disk reports 1 MiB free; fit refuses before the first epoch and leaves the folder empty."
    real = shutil.disk_usage
    monkeypatch.setattr(T.shutil, 'disk_usage', lambda p: real(p)._replace(free=2**20))
    class Count(Callback):
        epochs = 0
        def after_epoch(self, t): Count.epochs += 1
    with pytest.raises(OutputError) as ei:
        fit(Recipe(arch='cnn', size=32, epochs=2), cache32, out_dir=tmp_path/'run', progress=False, verbose=False,
            cbs=[Count()])
    assert 'only 1 MiB free' in str(ei.value) and str(tmp_path/'run') in str(ei.value)
    assert Count.epochs == 0 and list((tmp_path/'run').iterdir()) == []

def test_disk_full_mid_run_simulated(cache32, tmp_path):
    "Simulated: the disk fills while epoch 2's last.pt is written: OutputError; epoch 1's files intact; no temp files."
    out, saved = tmp_path/'run', {}
    class DiskFills(Checkpoints):
        def write_state(self, t, f):
            if t.epoch_i == 0: return super().write_state(t, f)
            f.write(b'x' * 4096); raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        def after_epoch(self, t):
            super().after_epoch(t)
            saved.update({f: digest(out/f) for f in ('model.pt', 'last.pt', 'history.csv')})
    with pytest.raises(OutputError) as ei:
        fit(Recipe(arch='cnn', size=32, epochs=3), cache32, out_dir=out, progress=False, verbose=False, cbs=[DiskFills()])
    assert str(out/'last.pt') in str(ei.value) and 'No space left on device' in str(ei.value)
    assert {f: digest(out/f) for f in saved} == saved and temp_files(out) == []
    assert load_resume_state(out)['epoch'] == 1 and load_checkpoint(out/'model.pt')[1]['epoch'] == 1

# --------------------------------------------------------------------------------------------------------------------
# A Trainer's parts, given as fastai's Learner takes them (net=, opt_func=); bench/ builds its Trainers that way and
# swaps no part after construction.

def _small():
    return T.PRESETS['default'].update(size=32, epochs=2, precision='fp32')

def test_trainer_trains_the_net_and_optimiser_it_is_given(cache32):
    net = T.create_model('cnn', in_chans=3)
    sgd = lambda n, r: torch.optim.SGD(n.parameters(), lr=r.lr, momentum=0.9)
    t = T.Trainer(_small(), cache32, progress=False, verbose=False, net=net, opt_func=sgd)
    assert t.net is net and type(t.opt) is torch.optim.SGD and t.sched.optimizer is t.opt
    before = T.state_hash(net)
    t.train_epoch(0)
    assert t.model is net and T.state_hash(net) != before
    d = T.Trainer(_small(), cache32, progress=False, verbose=False)          # the default parts: as before
    assert type(d.opt) is torch.optim.AdamW and d.net is not net and d.sched.optimizer is d.opt

def test_trainer_declares_its_loop_state(cache32):
    t = T.Trainer(_small(), cache32, progress=False, verbose=False)
    for name in ('bar', 'yb', 'loss', 'loss_sum', 'train_loss', 'metrics', 'model', 'stage', 'epoch_i', 'step_i'):
        assert hasattr(t, name), name

def test_bench_trainer_builds_its_parts_once():
    sys.path.insert(0, str(HERE.parent/'bench'))
    from _common import SCHEDULE_STEPS, first_batch, trainer
    net = T.create_model('cnn', in_chans=3)
    t = trainer(_small().update(batch_size=8), net=net, fused=False)
    assert t.net is net and t.model is net and t.sched.optimizer is t.opt
    assert t.sched.total_steps == SCHEDULE_STEPS
    before = T.state_hash(net)
    assert np.isfinite(float(t.one_batch(*first_batch(t))))
    assert T.state_hash(net) != before
    assert trainer(_small().update(batch_size=8), steps=50).sched.total_steps == 50
