"""A path component over 255 bytes, or an argument longer than PATH_MAX, was a traceback in nine commands (Python 3.11's
pathlib `exists()`/`is_dir()` raise ENAMETOOLONG): now one line and exit status 2 in every command, whether the path is an
argument or comes from the environment."""
import pytest

from conftest import assert_user_error

LONG_NAME = 'n' * 300                      # one component over NAME_MAX (255)
LONG_PATH = '/'.join(['d' * 200] * 30)     # 6,029 bytes: over PATH_MAX (4096), each component short


@pytest.mark.parametrize('long', [LONG_NAME, LONG_PATH], ids=['name', 'path'])
@pytest.mark.parametrize('cmd, args', [
    ('melanoma-prepare', ['{}']), ('melanoma-prepare', ['--cache', '{}']), ('melanoma-train', ['--data', '{}']),
    ('melanoma-train', ['--out', '{}', '--resume']), ('melanoma-train', ['--weights', '{}', '--arch', 'resnet18']),
    ('melanoma-evaluate', ['--model', '{}']), ('melanoma-predict', ['--model', '{}', '.']),
    ('melanoma-predict', ['--model', 'm.pt', '{}']), ('melanoma-audit', ['{}']), ('melanoma-audit', ['.', '--json', '{}/x']),
])
def test_too_long_argument_is_one_line(cmd, args, long, run_script, tmp_path):
    r = run_script(cmd, *[a.format(long) for a in args], cwd=tmp_path)
    assert_user_error(r, cmd, 'bytes long', 'give a shorter one')


@pytest.mark.parametrize('long', [LONG_NAME, LONG_PATH], ids=['name', 'path'])
def test_too_long_path_from_the_environment_is_one_line(long, run_script, cli_env, tmp_path):
    r = run_script('melanoma-prepare', '--where', env={**cli_env, 'MELANOMA_DATA': f'{tmp_path}/{long}'}, cwd=tmp_path)
    assert_user_error(r, 'melanoma-prepare', 'File name too long', 'give a shorter one')
