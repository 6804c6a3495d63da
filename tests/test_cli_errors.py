"""What an outside attack through the console scripts found after the restructure, reproduced as a user would meet it:
flags that were accepted and then ignored or misused, a full output, a user's file in the Grad-CAM folder, and a
pickle that made PyTorch print a warning before the one error line."""
import os, pickle
from pathlib import Path

import pytest

from conftest import assert_user_error


@pytest.mark.parametrize('cmd, args, needle', [
    ('melanoma-train', ['--workers', '1000'], 'argument --workers: must be between 0 and 64'),
    ('melanoma-audit', ['--min-corr', 'nan', '.'], 'argument --min-corr: must be a number between 0 and 1'),
    ('melanoma-audit', ['--min-corr', '-5', '.'], 'argument --min-corr'),
    ('melanoma-train', ['--max-unpacked', 'abc'], "argument --max-unpacked: 'abc' is not a size"),
    ('melanoma-evaluate', ['--model', 'x.pt', '--max-unpacked', '0'], 'argument --max-unpacked: must be more than 0'),
])
def test_bad_flags_refused_even_when_unused(cmd, args, needle, run_script):
    assert_user_error(run_script(cmd, *args), cmd, needle)


def test_full_output_is_one_line(model_file, sample, run_script, tmp_path):
    img = sorted((sample/'test'/'malignant').iterdir())[0]
    with open('/dev/full', 'w') as full:
        import subprocess
        from conftest import script_cmd
        r = subprocess.run(script_cmd('melanoma-predict') + ['--model', str(model_file), str(img)], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    r.stdout = ''
    assert_user_error(r, 'melanoma-predict', 'cannot write the output (No space left on device)')


def test_gradcam_never_overwrites_a_users_file(model_file, sample, run_script, tmp_path):
    img = sorted((sample/'test'/'malignant').iterdir())[0]
    mine = tmp_path/'cams'/f'{img.stem}_gradcam.png'
    mine.parent.mkdir(); mine.write_text('my own file')
    r = run_script('melanoma-predict', '--model', model_file, img, '--gradcam', tmp_path/'cams')
    assert r.returncode == 0, r.stderr[-3000:]
    assert mine.read_text() == 'my own file'
    assert (tmp_path/'cams'/f'{img.stem}_2_gradcam.png').read_bytes()[:4] == b'\x89PNG'


class _Evil:
    def __reduce__(self): return (os.system, ('touch PWNED',))


def test_raw_pickle_refused_in_one_line(tmp_path, sample, run_script):
    bad = tmp_path/'evil.pt'
    with open(bad, 'wb') as f: pickle.dump(_Evil(), f, protocol=4)
    img = sorted((sample/'test'/'malignant').iterdir())[0]
    r = run_script('melanoma-predict', '--model', bad, img, cwd=tmp_path)
    line = assert_user_error(r, 'melanoma-predict', str(bad))
    assert r.stderr.strip() == line and not (tmp_path/'PWNED').exists()
