"""What a user gave or made is never lost or passed over in silence (found by trying the console scripts from
outside): melanoma-evaluate's --out keeps the user's own files and is checked before any work, melanoma-train names
every skipped file, melanoma-predict names the files in a folder that it does not score, and the printed
`melanoma-train --resume --out RUN_DIR` goes on with the run's own data."""
import shutil
from pathlib import Path

from conftest import assert_user_error
from melanoma_nb.data import sample_root


def _subset(d: Path, n: int = 12) -> Path:
    "A small single-split copy of the sample's train/ (n images per class): data other than the sample."
    for cls in ('benign', 'malignant'):
        (d/cls).mkdir(parents=True)
        for f in sorted((sample_root()/'train'/cls).glob('*.jpg'))[:n]: shutil.copy(f, d/cls/f.name)
    return d


def test_evaluate_keeps_the_users_files(model_file, tmp_path, run_script):
    out = tmp_path/'mine'; out.mkdir()
    (out/'predictions.csv').write_text('my own list\n'); (out/'metrics.json').write_text('{"mine": 1}')
    r = run_script('melanoma-evaluate', '--model', model_file, '--data', sample_root(), '--out', out, '--n-boot', 10,
                   '--no-progress')
    assert_user_error(r, 'melanoma-evaluate', 'holds files that melanoma-evaluate did not write',
                      'metrics.json, predictions.csv')
    assert (out/'predictions.csv').read_text() == 'my own list\n' and (out/'metrics.json').read_text() == '{"mine": 1}'
    assert sorted(p.name for p in out.iterdir()) == ['metrics.json', 'predictions.csv']
    ev = tmp_path/'ev'                                        # an earlier evaluation's folder: run again, replaced
    for _ in range(2):
        r = run_script('melanoma-evaluate', '--model', model_file, '--data', sample_root(), '--out', ev,
                       '--n-boot', 10, '--no-progress')
        assert r.returncode == 0, r.stderr[-2000:]


def test_evaluate_out_is_checked_before_the_model(tmp_path, run_script):
    "An --out that is a file is said at once: the missing model is not even reached."
    (tmp_path/'a-file').write_text('x')
    for out, needle in [(tmp_path/'a-file', 'a-file is a file, not a folder'),
                        (tmp_path/'a-file'/'sub', 'is a file, so no folder can be made there')]:
        r = run_script('melanoma-evaluate', '--model', tmp_path/'missing.pt', '--data', sample_root(), '--out', out)
        assert_user_error(r, 'melanoma-evaluate', needle)
    assert (tmp_path/'a-file').read_text() == 'x'


def test_train_names_each_skipped_file(tmp_path, run_script):
    data = _subset(tmp_path/'data')
    first = sorted((data/'benign').glob('*.jpg'))[0]
    (data/'benign'/'cut.jpg').write_bytes(first.read_bytes()[:len(first.read_bytes())//2])     # a truncated JPEG
    (data/'malignant'/'notes.txt').write_text('not an image')
    r = run_script('melanoma-train', '--data', data, '--size', 32, '--epochs', 1, '--out', tmp_path/'run',
                   '--no-progress')
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"skipped {data/'benign'/'cut.jpg'}: truncated image" in r.stderr, r.stderr[-2000:]
    assert f"skipped {data/'malignant'/'notes.txt'}: not an image file (extension '.txt')" in r.stderr
    assert '2 file(s) skipped' in r.stdout


def test_predict_names_what_it_does_not_score(model_file, tmp_path, run_script):
    photos = tmp_path/'photos'; photos.mkdir(); (tmp_path/'empty').mkdir()
    shutil.copy(sorted((sample_root()/'test'/'benign').glob('*.jpg'))[0], photos/'a.jpg')
    (photos/'b.heic').write_bytes(b'x'); (photos/'notes.txt').write_text('x')
    r = run_script('melanoma-predict', '--model', model_file, photos, tmp_path/'empty')
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.splitlines()) == 1
    assert r.stderr.splitlines() == [f"{photos/'b.heic'}: not an image file (extension '.heic')",
                                     f"{photos/'notes.txt'}: not an image file (extension '.txt')",
                                     f"{tmp_path/'empty'}: a folder with no image file in it"]


def test_resume_as_printed_uses_the_runs_data(tmp_path, monkeypatch, capsys):
    "Interrupted on its own data, `melanoma-train --resume --out RUN_DIR` (the line it prints) finishes the run."
    from melanoma_nb.cli import train_main
    from melanoma_nb.training import Callback
    class StopAfterFirstEpoch(Callback):                     # as if Ctrl-C were pressed right after epoch 1
        def after_epoch(self, t): raise KeyboardInterrupt
    monkeypatch.setenv('MELANOMA_CACHE', str(tmp_path/'cache')); monkeypatch.delenv('MELANOMA_DATA', raising=False)
    data, out = _subset(tmp_path/'data'), tmp_path/'run'
    argv = ['--data', str(data), '--size', '32', '--epochs', '2', '--out', str(out), '--no-progress']
    assert train_main(argv, cbs=[StopAfterFirstEpoch()]) == 130
    assert f"--resume --out {out}" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)                              # elsewhere, without --data: the run's own data
    status = train_main(['--resume', '--out', str(out), '--no-progress'])
    err = capsys.readouterr().err
    assert status == 0, err[-2000:]
    assert (out/'model.pt').exists() and not (out/'last.pt').exists()


def test_audit_json_keeps_the_users_file(tmp_path, run_script):
    "melanoma-audit --json onto the user's own file: refused at once, the file unchanged; an earlier audit's: replaced."
    data = _subset(tmp_path/'data', n=4)
    mine = tmp_path/'mine.json'; mine.write_text('{"my": "notes"}')
    r = run_script('melanoma-audit', data, '--no-progress', '--no-artefacts', '--json', mine)
    assert_user_error(r, 'melanoma-audit', 'exists and melanoma-audit did not write it')
    assert mine.read_text() == '{"my": "notes"}' and r.stdout == ''              # before any work
    for _ in range(2):
        r = run_script('melanoma-audit', data, '--no-progress', '--no-artefacts', '--json', tmp_path/'leaks.json')
        assert r.returncode == 0, r.stderr[-2000:]
