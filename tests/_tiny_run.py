"""A tiny real run for the command tests: 1 epoch at 32 px on a copy of the bundled sample (shared helper, not a test)."""
import shutil
from pathlib import Path

from melanoma_nb.data import prepare, sample_root


def tiny_run(d: Path, **recipe) -> Path:
    "Train the 'default' recipe for 1 epoch at 32 px into d/run on a copy of the sample at d/data; -> d/run/model.pt."
    from melanoma_nb.training import PRESETS, fit
    shutil.copytree(sample_root(), d/'data')
    cache = prepare(d/'data', size=32, channels=3, cache_dir=d/'cache', progress=False, verbose=False)
    fit(PRESETS['default'].update(size=32, epochs=1, **recipe), cache, out_dir=d/'run', progress=False, verbose=False)
    return d/'run'/'model.pt'


def edit_meta(src: Path, dst: Path, **changes) -> Path:
    "A copy of checkpoint `src` at `dst` with its meta changed (as a user with a text editor and torch might)."
    import torch
    from melanoma_nb.checkpoint import read_checkpoint
    ck = read_checkpoint(src)
    ck['meta'].update(changes)
    torch.save(ck, dst)
    return dst
