"""A CPU torch beside a CUDA torchvision of the same release (what `pip install ... --index-url .../cpu` leaves where a
pip.conf adds an extra index) trained and failed only later, in Grad-CAM: every command, melanoma-train whatever the
model, now refuses it at start in one line that says what to run."""
import os
from importlib.metadata import version

import pytest

from conftest import assert_user_error


def _fake_torchvision(d, v: str):
    "A torchvision `v` in package metadata only, found before the real one (what `version('torchvision')` reads)."
    (d/f'torchvision-{v}.dist-info').mkdir(parents=True)
    (d/f'torchvision-{v}.dist-info'/'METADATA').write_text(f'Metadata-Version: 2.1\nName: torchvision\nVersion: {v}\n')
    return d


@pytest.mark.parametrize('cmd, args', [('melanoma-train', ['--arch', 'cnn', '--epochs', '1']),
                                       ('melanoma-train', ['--arch', 'resnet18w32', '--budget', '1']),
                                       ('melanoma-prepare', [])])
def test_a_mixed_build_pair_is_refused_at_start(cmd, args, run_script, cli_env, tmp_path):
    tv = version('torchvision').partition('+')[0]
    other = '' if '+' in version('torch') else '+cpu'          # a build label other than torch's
    fake = _fake_torchvision(tmp_path/'fake', tv + other)
    env = {**cli_env, 'PYTHONPATH': os.pathsep.join([str(fake), *filter(None, [cli_env.get('PYTHONPATH')])])}
    r = run_script(cmd, *args, env=env, cwd=tmp_path)
    line = assert_user_error(r, cmd, 'are different builds', 'pip install --isolated --force-reinstall',
                             'the same without --index-url')
    assert f"torch=={version('torch').partition('+')[0]}" in line, line
    assert not (tmp_path/'runs').exists()                     # refused before anything was made
