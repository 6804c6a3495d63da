"""melanoma-evaluate and melanoma-predict outputs: strict JSON, real CSV, files written whole or not at all, flags
checked, unreadable inputs counted, and the exit statuses of the documented table; run as a user runs them."""
import csv, json, resource, shutil, signal, subprocess

import pytest

from conftest import assert_user_error, script_cmd
from melanoma_nb.data import sample_root


def _strict(line: str):
    "json.loads that refuses NaN and Infinity, as any strict JSON reader does."
    return json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}: {line}"))


def _images(d, n_mal=2, n_ben=1):
    d.mkdir(parents=True, exist_ok=True)
    src = sorted((sample_root()/'test'/'malignant').glob('*.jpg'))[:n_mal] + sorted((sample_root()/'test'/'benign').glob('*.jpg'))[:n_ben]
    for f in src: shutil.copy(f, d/f.name)
    return src


def test_predict_some_unreadable(model_file, tmp_path, run_script):
    "Results for the good files on stdout, the bad ones listed on stderr with a count, exit status 0."
    good = _images(tmp_path/'in')
    (tmp_path/'in'/'broken.jpg').write_bytes(b'not a jpeg')
    r = run_script('melanoma-predict', '--model', model_file, tmp_path/'in', tmp_path/'missing.jpg')
    assert r.returncode == 0, r.stderr
    assert sorted(_strict(l)['path'].rsplit('/', 1)[1] for l in r.stdout.splitlines()) == sorted(f.name for f in good)
    assert 'broken.jpg' in r.stderr and 'missing.jpg: no such file or folder' in r.stderr
    assert len(r.stderr.splitlines()) == 2 and 'Traceback' not in r.stderr


def test_predict_all_unreadable_is_a_user_error(model_file, tmp_path, run_script):
    (tmp_path/'broken.jpg').write_bytes(b'not a jpeg')
    r = run_script('melanoma-predict', '--model', model_file, tmp_path/'broken.jpg')
    assert_user_error(r, 'melanoma-predict', 'none of the 1 input(s) could be read')
    assert r.stdout == '' and 'broken.jpg' in r.stderr


@pytest.mark.parametrize('argv, needle', [
    (['--threshold', 'nan'], 'argument --threshold: must be a probability between 0 and 1'),
    (['--threshold', '5'], "not '5'"), (['--threshold', 'inf'], "not 'inf'"), (['--threshold', '-1'], "not '-1'"),
    (['--batch-size', '0'], 'argument --batch-size: must be at least 1, not 0'),
    (['--batch-size', '-3'], 'must be at least 1, not -3')])
@pytest.mark.parametrize('script', ['melanoma-predict', 'melanoma-evaluate'])
def test_flags_out_of_range(script, argv, needle, model_file, tmp_path, run_script):
    "A threshold outside [0, 1] labelled every image one class; a batch of 0 or less gave a traceback or p = 0."
    inputs = [sample_root()/'test'] if script == 'melanoma-predict' else ['--out', tmp_path/'o']
    r = run_script(script, '--model', model_file, *argv, *inputs)
    assert_user_error(r, script, needle)
    assert r.stdout == ''


def test_empty_path_is_refused(model_file, tmp_path, run_script):
    "An empty path is the current folder to pathlib: predict scanned the working folder recursively."
    _images(tmp_path/'cwd')
    r = run_script('melanoma-predict', '--model', model_file, '', cwd=tmp_path/'cwd')
    assert_user_error(r, 'melanoma-predict', 'argument PATH: an empty path')
    assert r.stdout == ''
    for script, argv in [('melanoma-evaluate', ['--model', model_file, '--data', '']), ('melanoma-audit', ['']),
                         ('melanoma-prepare', ['']), ('melanoma-train', ['--data', ''])]:
        assert_user_error(run_script(script, *argv, cwd=tmp_path/'cwd'), script, 'an empty path')


def test_predict_never_prints_nan(model_file, tmp_path, run_script):
    "A checkpoint whose weights turned NaN printed `\"p_malignant\": NaN` (not JSON) with exit status 0."
    import torch
    ck = torch.load(model_file, map_location='cpu', weights_only=True)
    k = next(k for k, v in ck['state_dict'].items() if v.is_floating_point() and v.ndim > 1)
    ck['state_dict'][k] = torch.full_like(ck['state_dict'][k], float('nan'))
    torch.save(ck, tmp_path/'nan.pt')
    r = run_script('melanoma-predict', '--model', tmp_path/'nan.pt', sample_root()/'test'/'malignant')
    for line in r.stdout.splitlines(): _strict(line)
    assert 'NaN' not in r.stdout and r.returncode in (1, 2), (r.returncode, r.stdout[:500], r.stderr[-1000:])
    assert_user_error(r, 'melanoma-predict', 'nan.pt', status=r.returncode)


def test_evaluate_csv_with_awkward_file_names(model_file, tmp_path, run_script):
    "A file name with a quote or a comma shifted the columns of predictions.csv."
    names = ['a"b.jpg', 'c,d.jpg', "e'f.jpg"]
    for cls, src in (('benign', 'benign'), ('malignant', 'malignant')):
        (tmp_path/'data'/cls).mkdir(parents=True)
        for n, f in zip(names, sorted((sample_root()/'test'/src).glob('*.jpg'))): shutil.copy(f, tmp_path/'data'/cls/n)
    r = run_script('melanoma-evaluate', '--model', model_file, '--data', tmp_path/'data', '--out', tmp_path/'o',
                   '--n-boot', '20', '--cache', tmp_path/'cache')
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path/'o'/'predictions.csv', newline='')))
    assert len(rows) == 6 and all(len(row) == 3 and None not in row for row in rows)
    assert sorted(row['path'].rsplit('/', 1)[1] for row in rows) == sorted(names * 2)
    assert {row['label'] for row in rows} == {'benign', 'malignant'} and all(0 <= float(row['p_malignant']) <= 1 for row in rows)
    json.loads((tmp_path/'o'/'metrics.json').read_text(), parse_constant=lambda c: pytest.fail(c))


def test_evaluate_failed_write_keeps_the_old_results(model_file, tmp_path, cli_env):
    "A write that fails half-way (here a file size limit, as a full disk) left a truncated metrics.json."
    args = ['--model', model_file, '--data', sample_root()/'test', '--out', tmp_path/'o', '--n-boot', '20',
            '--cache', tmp_path/'cache', '--no-progress']
    cmd = script_cmd('melanoma-evaluate') + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    before = {f.name: f.read_bytes() for f in (tmp_path/'o').iterdir()}
    def limit():   # files may not grow past 300 bytes; the write fails with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
    r = subprocess.run(cmd + ['--threshold', '0.3'], capture_output=True, text=True, env=cli_env, timeout=300, preexec_fn=limit)
    assert_user_error(r, 'melanoma-evaluate', 'metrics.json')
    assert {f.name: f.read_bytes() for f in (tmp_path/'o').iterdir()} == before


def test_evaluate_help_has_no_double_percent(run_script):
    r = run_script('melanoma-evaluate', '--help')
    assert r.returncode == 0 and '%%' not in r.stdout and '95 %' in r.stdout


def test_predict_into_a_closed_pipe_is_quiet(model_file, cli_env):
    "`melanoma-predict ... | head -1` ended in a BrokenPipeError traceback."
    p = subprocess.Popen(script_cmd('melanoma-predict') + ['--model', str(model_file), str(sample_root()/'test'), '--batch-size', '4'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env)
    first = p.stdout.readline(); p.stdout.close()
    err = p.stderr.read().decode(); p.wait(timeout=300)
    assert _strict(first.decode())['path'] and 'Traceback' not in err and p.returncode == 141, (p.returncode, err[-2000:])


def test_predict_skips_a_named_pipe(model_file, tmp_path, run_script):
    "A FIFO named pipe.jpg in the input folder made melanoma-predict wait for ever."
    import os
    good = _images(tmp_path/'in', 1, 1)
    os.mkfifo(tmp_path/'in'/'pipe.jpg')
    r = run_script('melanoma-predict', '--model', model_file, tmp_path/'in', timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(_strict(l)['path'].rsplit('/', 1)[1] for l in r.stdout.splitlines()) == sorted(f.name for f in good)
    assert 'pipe.jpg' in r.stderr and 'not a regular file' in r.stderr
