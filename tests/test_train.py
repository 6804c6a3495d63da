"""melanoma-train's run folder (issue 25, F): --overwrite leaves nothing of the old model, one run per folder at a time."""
import json, subprocess, sys, time
from pathlib import Path

import pytest

from conftest import script_cmd


def _train(out, *args):
    return script_cmd('melanoma-train') + ['--size', '32', '--epochs', '1', '--out', str(out), '--no-progress', *args]


def test_overwrite_removes_the_old_evaluation(run_script, tmp_path):
    out = tmp_path/'R'
    assert run_script('melanoma-train', *_train(out)[len(script_cmd('melanoma-train')):], timeout=300).returncode == 0
    ev = run_script('melanoma-evaluate', '--model', out/'model.pt', '--n-boot', 20, '--no-progress', timeout=300)
    assert ev.returncode == 0 and (out/'eval'/'metrics.json').exists(), ev.stderr[-2000:]
    r = run_script('melanoma-train', *_train(out, '--overwrite')[len(script_cmd('melanoma-train')):], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (out/'eval'/'metrics.json').exists()
    from melanoma_nb.app import model_card
    from melanoma_nb.evaluation import Predictor
    assert 'Not evaluated yet' in model_card(Predictor.from_file(out/'model.pt'))


def test_two_runs_into_one_folder(cli_env, tmp_path):
    out = tmp_path/'R'
    ps = [subprocess.Popen(_train(out, '--seed', str(k)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=cli_env) for k in range(2)]
    res = [(p.wait(300), p.stdout.read(), p.stderr.read()) for p in ps]
    codes = sorted(c for c, _, _ in res)
    assert codes == [0, 2], res
    loser = next(e for c, _, e in res if c == 2)
    assert 'melanoma-train: error:' in loser and ('another melanoma-train' in loser or 'finished run' in loser), loser
    assert 'Traceback' not in loser
