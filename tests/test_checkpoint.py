"""melanoma_nb.checkpoint, and the commands that read checkpoints: checkpoints that are damaged, not checkpoints,
pickled code, or made for another model (architecture, channels, image size).

Each test would fail if the behaviour it names regressed. Child processes run the real console scripts."""
import os, pickle, shutil, stat, zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_user_error, has_entry_point


from test_data import _sample_jpgs, _zip   # the same helpers as the data tests


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints that are damaged, not checkpoints, or pickled code: CheckpointError, nothing executed.

from melanoma_nb.training import Callback, Recipe, fit
from melanoma_nb.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint

class Payload:
    "Unpickling this runs a shell command that creates `marker` (what a malicious checkpoint would do)."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))

class PayloadOpen:
    "Unpickling this calls open(marker, 'w'): creates the file, no shell involved."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (open, (self.marker, 'w'))

def _bad_checkpoint(kind: str, good: Path, d: Path) -> tuple[Path, Path | None, str]:
    "-> (file, marker that must not appear or None, a phrase the error must contain)"
    b = good.read_bytes()
    rng = np.random.default_rng(8)
    marker = d/f'{kind}.pwned'
    if kind.startswith('truncated-'):
        frac = float(kind.split('-')[1])
        p = d/f'{kind}.pt'; p.write_bytes(b[:int(len(b) * frac)]); return p, None, 'truncated or not a PyTorch'
    if kind == 'empty': p = d/'empty.pt'; p.write_bytes(b''); return p, None, 'truncated or not a PyTorch'
    if kind == 'random-bytes':       # (the message may call it pickled objects: the unpickler stops at a bad opcode)
        p = d/'random.pt'; p.write_bytes(rng.bytes(50_000)); return p, None, 'not a ' 
    if kind == 'text': p = d/'notes.pt'; p.write_text('this is a text file\n' * 100); return p, None, 'not a PyTorch'
    if kind == 'zip-not-torch': p = _zip(d/'other.pt', [('a.txt', b'hello')]); return p, None, 'not a PyTorch'
    if kind == 'pickle-system':      # a raw (legacy format) pickle whose loading runs os.system
        p = d/'evil.pt'; p.write_bytes(pickle.dumps(Payload(marker), protocol=2)); return p, marker, 'pickled Python objects'
    if kind == 'torch-save-system':  # torch.save's zip format, the payload hidden inside an otherwise valid checkpoint
        ck = torch.load(good, weights_only=True); ck['meta']['extra'] = Payload(marker)
        p = d/'evil2.pt'; torch.save(ck, p); return p, marker, 'pickled Python objects'
    if kind == 'torch-save-open':
        p = d/'evil3.pt'; torch.save({'state_dict': PayloadOpen(marker)}, p); return p, marker, 'pickled Python objects'
    raise ValueError(kind)

CKPT_CASES = ['truncated-0.5', 'truncated-0.02', 'truncated-0.999', 'empty', 'random-bytes', 'text', 'zip-not-torch',
              'pickle-system', 'torch-save-system', 'torch-save-open']

def test_payloads_are_live(tmp_path, model_file):
    "The malicious files really would run code if loaded the unsafe way (so the refusals below mean something)."
    for kind in ('pickle-system', 'torch-save-system', 'torch-save-open'):
        p, marker, _ = _bad_checkpoint(kind, model_file, tmp_path)
        if kind == 'pickle-system': pickle.loads(p.read_bytes())
        else: torch.load(p, weights_only=False)
        assert marker.exists(), kind
        marker.unlink()

@pytest.mark.parametrize('kind', CKPT_CASES)
def test_bad_checkpoint_refused(kind, tmp_path, model_file):
    p, marker, phrase = _bad_checkpoint(kind, model_file, tmp_path)
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError) as ei: load(p)
        msg = str(ei.value)
        assert str(p) in msg and phrase in msg, msg
    if marker is not None:
        assert not marker.exists(), 'the pickled payload ran'
        assert 'nothing in it was run' in msg

def test_resume_state_is_not_a_model(tmp_path, cache32):
    "last.pt (the resume state) given where a model is expected: a clear error saying what it is."
    out = tmp_path/'run'
    class Stop(Callback):
        def after_epoch(self, t): raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(Recipe(arch='cnn', size=32, epochs=2), cache32, out_dir=out, progress=False, verbose=False, cbs=[Stop()])
    with pytest.raises(CheckpointError, match='resume state of an unfinished run'): load_checkpoint(out/'last.pt')

def test_corrupt_resume_state_melanoma_train(tmp_path, model_file, run_script, sample):
    "melanoma-train --resume reads last.pt: a truncated or malicious one is one error line, exit 2, nothing run."
    for kind in ('torch-save-system',):
        out = tmp_path/kind; out.mkdir()
        p, marker, phrase = _bad_checkpoint(kind, model_file, tmp_path)
        shutil.copy(p, out/'last.pt')
        r = run_script('melanoma-train', '--data', sample, '--out', out, '--resume', '--device', 'cpu', '--no-progress')
        assert_user_error(r, 'melanoma-train', str(out/'last.pt'), phrase)
        if marker is not None: assert not marker.exists()

@pytest.mark.parametrize('script', ['melanoma-predict', 'melanoma-evaluate'])
def test_bad_checkpoint_cli(script, tmp_path, model_file, run_script, sample):
    if not has_entry_point(script): pytest.skip(f"melanoma_nb.cli has no entry point for {script} yet")
    kinds = ('truncated-0.5', 'torch-save-system') if script == 'melanoma-predict' else ('text', 'pickle-system')
    for kind in kinds:
        p, marker, phrase = _bad_checkpoint(kind, model_file, tmp_path)
        if script == 'melanoma-predict': args = ['--model', p, _sample_jpgs(sample, 'benign', 1)[0]]
        else: args = ['--model', p, '--data', sample/'test', '--out', tmp_path/'eval', '--no-progress']
        r = run_script(script, *args)
        assert_user_error(r, script, str(p), phrase)
        if marker is not None: assert not marker.exists()

# --------------------------------------------------------------------------------------------------------------------
# A checkpoint for another architecture, channel count or image size: an error naming both.

@pytest.mark.parametrize('asked, saved_txt, asked_txt', [
    (dict(arch='resnet18'), "'cnn' with 3 channels at 32 px", "'resnet18' with 3 channels at 32 px"),
    (dict(in_chans=1), "'cnn' with 3 channels at 32 px", "'cnn' with 1 channel at 32 px"),
    (dict(size=224), "'cnn' with 3 channels at 32 px", "'cnn' with 3 channels at 224 px"),
    (dict(arch='resnet50', in_chans=1, size=64), "'cnn' with 3 channels at 32 px", "'resnet50' with 1 channel at 64 px"),
])
def test_checkpoint_for_another_model(model_file, asked, saved_txt, asked_txt):
    with pytest.raises(CheckpointError) as ei: load_checkpoint(model_file, **asked)
    msg = str(ei.value)
    assert str(model_file) in msg and saved_txt in msg and asked_txt in msg, msg
    model, meta = load_checkpoint(model_file, arch='cnn', in_chans=3, size=32)     # the matching request loads
    assert meta['arch'] == 'cnn' and meta['in_chans'] == 3 and meta['size'] == 32

def test_checkpoint_weights_of_another_model(model_file, tmp_path):
    "A file whose meta says one model but whose weights are another's (edited or mixed up): named, not loaded."
    from melanoma_nb.cnn import create_model
    ck = torch.load(model_file, weights_only=True)
    for arch, ch in (('resnet18', 3), ('cnn', 1)):
        p = tmp_path/f'mixed-{arch}-{ch}.pt'
        save_checkpoint(p, create_model(arch, in_chans=ch, num_classes=2), ck['meta'])
        with pytest.raises(CheckpointError) as ei: load_checkpoint(p)
        assert str(p) in str(ei.value) and "do not fit a 'cnn' model with 3 channel(s)" in str(ei.value), str(ei.value)
