"""Long silences: on a terminal the cache build and each epoch show a live tqdm bar (rate, time left), and a budget that
cannot fit is refused from a quick estimate before the cache is built (it was refused only after the cache, a minute or
more at full size)."""
import fcntl, os, pty, re, select, struct, subprocess, termios, time

from conftest import assert_user_error, script_cmd


def _on_a_terminal(cmd, env, cwd, timeout=300) -> tuple:
    "Run `cmd` with stdout and stderr on a 120-column pseudo-terminal; -> (exit status, everything it wrote)."
    main, sub = pty.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 120, 0, 0))
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sub, stderr=sub, env=env, cwd=cwd, close_fds=True)
    os.close(sub)
    out, t0 = b'', time.monotonic()
    while time.monotonic() - t0 < timeout:
        if select.select([main], [], [], 0.5)[0]:
            try: chunk = os.read(main, 65536)
            except OSError: chunk = b''                       # (EIO: the process closed the terminal)
            if not chunk and p.poll() is not None: break
            out += chunk
        elif p.poll() is not None: break
    os.close(main)
    return p.wait(timeout=60), out.decode('utf-8', 'replace')


def test_bars_on_a_terminal(sample, cli_env, tmp_path):
    status, out = _on_a_terminal(script_cmd('melanoma-train') + ['--data', str(sample), '--size', '32', '--epochs', '1',
                                 '--out', str(tmp_path/'run'), '--cache', str(tmp_path/'cache')], cli_env, tmp_path)
    assert status == 0, out[-3000:]
    frames = re.split(r'[\r\n]', out)
    assert any(re.search(r'decode: +\d+%\|.*img/s', f) for f in frames), out[-3000:]         # the cache build
    assert any(re.search(r'epoch 1/1: +\d+%\|.*\[\d\d:\d\d<\d\d:\d\d', f) for f in frames), out[-3000:]   # time left


def test_budget_refused_before_the_cache(sample, run_script, tmp_path):
    r = run_script('melanoma-train', '--data', sample, '--budget', '0.05', '--out', tmp_path/'run', '--cache',
                   tmp_path/'cache', cwd=tmp_path)
    assert_user_error(r, 'melanoma-train', 'a budget of 0.05 min cannot fit: by a quick estimate', '--budget')
    assert not list(tmp_path.rglob('images*.npy')), list(tmp_path.rglob('*'))          # nothing was decoded
