"""Ctrl-C while a console script is still importing melanoma_nb.cli (before `_run` has installed its handlers) was a
KeyboardInterrupt traceback: now one line, 'interrupted', and exit status 130, as later in the run."""
import os, signal, subprocess, sys, time
from pathlib import Path

import pytest

HOOK = '''
import os, sys, time
class SlowSettings:                        # holds the import of melanoma_nb.settings (imported by melanoma_nb.cli)
    def find_spec(self, name, path=None, target=None):
        if name == 'melanoma_nb.settings':
            open(os.environ['IMPORT_MARK'], 'w').close(); time.sleep(60)
        return None
sys.meta_path.insert(0, SlowSettings())
'''


@pytest.mark.parametrize('name', ['melanoma-train', 'melanoma-predict'])
def test_ctrl_c_during_the_import_is_one_line(name, tmp_path, cli_env):
    script = Path(sys.executable).parent/name
    if not script.is_file(): pytest.skip(f"{name} is not installed next to {sys.executable}")
    (tmp_path/'sitecustomize.py').write_text(HOOK)
    mark = tmp_path/'importing'
    env = {**cli_env, 'IMPORT_MARK': str(mark),
           'PYTHONPATH': os.pathsep.join([str(tmp_path), *filter(None, [cli_env.get('PYTHONPATH')])])}
    # Ctrl-C as a terminal user has it: a shell's background job (`tools/test.sh &`) starts with SIGINT ignored, and
    # a Python started so never raises KeyboardInterrupt
    p = subprocess.Popen([str(script), '--help'], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.monotonic()
    while not mark.exists() and p.poll() is None and time.monotonic() - t0 < 60: time.sleep(0.05)
    assert mark.exists(), p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert (p.returncode, err, out) == (130, f'{name}: interrupted\n', ''), (p.returncode, err[-2000:])
