"tools/rhythm.py: the notebook rhythm figures of issue 33, counted on made-up cells and on the notebooks that meet them."
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))
import rhythm  # noqa: E402


def code(s): return dict(cell_type='code', source=s, outputs=[])
def md(s): return dict(cell_type='markdown', source=s)


CELLS = [md('# Title\n\n> one line'),
         code('#| export\nimport os'),
         code('#| export\ndef f(x):\n    return x\n\ndef g(x): return 2 * x'),   # two definitions
         md('Why ' + 'word ' * 9),
         code('test_eq(f(1), 1)'),                                              # f shown, g not
         code('#| export\n@patch\ndef h(self: A): pass\n' + 'x = 1  # ' + 'y' * 120),
         code('a.h()'),
         code('#| exports\nclass K: pass'),                                     # the last one, never used
         md(' '.join(['w'] * 400))]


def test_measure_counts_what_the_docstring_says():
    f = rhythm.figures(rhythm.measure(CELLS))
    assert f['cells'] == 4                                     # `#| export` and `#| exports` cells
    assert f['multi'] == 0.25                                  # one of four has f and g
    assert f['in_use'] == 2 / 4                                # f and h are shown; g and K are not
    assert f['md_max'] == 400 and f['md_median'] == 10
    assert f['lines'] == 2.0                                   # 1, 3, 3 and 1 non-blank, non-directive lines
    assert abs(f['long'] - 1 / 15) < 1e-12                     # one line over 120 of 15 code lines


def test_misses_names_each_target_missed():
    f = rhythm.figures(rhythm.measure(CELLS))
    bad = rhythm.misses(f)
    assert len(bad) == 3, bad                                  # shown in use, the 400-word cell, long lines
    assert any('400 words' in b for b in bad) and any('shown in use' in b for b in bad)
    assert rhythm.misses(dict(f, in_use=1.0, md_max=10, long=0.0)) == []


def test_magics_and_syntax_errors_do_not_stop_the_count():
    assert rhythm.definitions('%time x = 1\ndef a(): pass\n!ls') == ['a']
    assert rhythm.definitions('def b(:\nclass C: pass') == ['b', 'C']    # not Python: a regex fallback


def test_notebooks_brought_to_the_rhythm_stay_there(capsys):
    nbs = [ROOT/'nbs'/n for n in ('01_audit.ipynb', '02_dataset.ipynb', '05_metrics.ipynb', '10_architecture.ipynb')]
    for nb in nbs:
        f = rhythm.figures(rhythm.measure(json.loads(nb.read_text(encoding='utf-8'))['cells']))
        assert rhythm.misses(f) == [], (nb.name, rhythm.misses(f))
    assert rhythm.main([str(p) for p in nbs] + ['--check']) == 0
    assert 'all targets met' in capsys.readouterr().out


def test_an_unreadable_notebook_is_a_user_error(tmp_path, capsys):
    bad = tmp_path/'99_x.ipynb'; bad.write_text('not json')
    assert rhythm.main([str(bad)]) == 2
    assert '99_x.ipynb: not a readable notebook' in capsys.readouterr().err
