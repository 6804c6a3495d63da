"""melanoma-prepare and melanoma-train from the command line: the exit-status table in every --help, a prepared cache
that training reuses, `--where`, and a finished run that is never written over without --overwrite."""
import pytest

from conftest import SCRIPTS, assert_user_error
from melanoma_nb.data import sample_root

RUN_FILES = ('model.pt', 'metrics.json', 'history.csv', 'curves.png')


@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_help_lists_the_exit_statuses(name, run_script):
    r = run_script(name, '--help')
    assert r.returncode == 0, r.stderr
    table = r.stdout[r.stdout.index('exit status:'):]
    for code, word in (('0', 'success'), ('1', 'the run itself failed'), ('2', 'a user error'), ('130', 'interrupted')):
        assert f'  {code} ' in table and word in table, table


def test_help_examples_one_per_line(run_script):
    r = run_script('melanoma-train', '--help')
    ex = r.stdout[r.stdout.index('examples:'):].split('\n\n')[0].splitlines()[1:]
    assert len(ex) >= 4 and all(l.strip().startswith(('melanoma-train', 'torchrun')) for l in ex), ex
    for flag in ('--arch', '--channels', '--epochs', '--seed', '--weight-decay', '--label-smoothing', '--batch-size', '--size'):
        line = r.stdout[r.stdout.index(f'  {flag} '):].split('\n  -')[0]
        assert 'default' in line, (flag, line)
    for preset in ('default', 'cpu', 'gpu', 'seed'): assert f'\n  {preset} ' in r.stdout
    assert "original Kaggle notebook" in r.stdout


def test_prepare_then_train_decodes_once(tmp_path, run_script, cli_env):
    "melanoma-prepare built a 224 px cache while melanoma-train's default is 64 px: 'prepare, then train' decoded twice."
    env = {**cli_env, 'MELANOMA_CACHE': str(tmp_path/'cache')}
    r = run_script('melanoma-prepare', sample_root(), env=env)
    assert r.returncode == 0, r.stderr
    caches = sorted(p.name for p in (tmp_path/'cache').iterdir() if p.is_dir())
    r = run_script('melanoma-train', '--data', sample_root(), '--epochs', '1', '--out', tmp_path/'run', '--no-progress', env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path/'cache').iterdir() if p.is_dir()) == caches, 'training built a second cache'


def test_prepare_where_prints_the_data_folder(run_script, tmp_path):
    r = run_script('melanoma-prepare', '--where', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sample_root()) and (sample_root()/'test'/'malignant').is_dir()


def test_train_never_writes_over_a_finished_run(tmp_path, run_script):
    "melanoma-train --out over a finished run overwrote its model.pt, metrics.json, history.csv and curves.png."
    args = ['--size', '32', '--epochs', '1', '--no-progress', '--cache', tmp_path/'cache', '--out', tmp_path/'prev']
    r = run_script('melanoma-train', *args)
    assert r.returncode == 0, r.stderr
    before = {f: (tmp_path/'prev'/f).read_bytes() for f in RUN_FILES}
    r = run_script('melanoma-train', *args, '--seed', '1')
    assert_user_error(r, 'melanoma-train', 'holds a finished run', '--overwrite', '--resume', 'nothing was changed')
    assert {f: (tmp_path/'prev'/f).read_bytes() for f in RUN_FILES} == before
    r = run_script('melanoma-train', *args, '--seed', '1', '--overwrite')
    assert r.returncode == 0, r.stderr
    assert (tmp_path/'prev'/'model.pt').read_bytes() != before['model.pt']
