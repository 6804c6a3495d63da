"""melanoma-audit --json (issue 25, F): never replaces what is not a regular file."""
import os, stat, sys

import pytest

from conftest import assert_user_error

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='named pipes')


def test_json_onto_a_fifo_or_a_folder(run_script, sample, tmp_path):
    fifo = tmp_path/'out.json'; os.mkfifo(fifo)
    r = run_script('melanoma-audit', sample, '--json', fifo, '--no-progress', timeout=300)
    assert_user_error(r, 'melanoma-audit', 'named pipe')
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path/'dir.json').mkdir()
    r = run_script('melanoma-audit', sample, '--json', tmp_path/'dir.json', '--no-progress', timeout=300)
    line = assert_user_error(r, 'melanoma-audit', 'is a folder')
    assert 'disk space' not in line
