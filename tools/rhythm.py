#!/usr/bin/env python
"""Report how close the numbered notebooks keep the anchors' rhythm (issue 33, item 5): small exported cells, one
definition each, each shown in use before the next export, short prose, short code lines.

    python tools/rhythm.py                 # every numbered notebook (nbs/NN_*.ipynb), then the total
    python tools/rhythm.py nbs/05_metrics.ipynb nbs/10_architecture.ipynb
    python tools/rhythm.py --check         # exit 1 when the total misses a target

The figures (how they are counted):
- lines: the median (and 90th percentile) of the lines of an exported cell (`#| export`, `#| exports`,
  `#| exporti`), counting non-blank lines that are not `#|` directives;
- defs>=2: the share of exported cells with two or more top-level definitions (`def`, `async def`, `class`; a
  `@patch`ed function counts as one; assignments are not definitions);
- in use: the share of those definitions whose name (as a word) appears in a code cell that is not exported,
  after the definition's cell and before the next exported cell;
- md words: the median words (whitespace-separated) per markdown cell, and the largest;
- >120: the share of code lines (every code cell) longer than 120 characters.
Totals pool the cells of all notebooks (a median over every exported cell, not a median of medians).
"""
from __future__ import annotations

import argparse, ast, json, re, sys
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
TARGETS = dict(lines=12, multi=0.25, in_use=0.75, md_median=35, md_max=300, long=0.02)
_re_export = re.compile(r'^\s*#\|\s*export[si]?\s*$', re.M)
_re_numbered = re.compile(r'^\d+[a-zA-Z0-9]*_.*\.ipynb$')


def src(cell) -> str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else s


def is_export(cell) -> bool:
    return cell.get('cell_type') == 'code' and bool(_re_export.search(src(cell)))


def code_lines(text: str) -> list[str]:
    "Non-blank lines that are not `#|` directives."
    return [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith('#|')]


def _parsable(text: str) -> str:
    "The cell with IPython magics and shell escapes blanked, so `ast` can read it."
    return '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in text.splitlines())


def definitions(text: str) -> list[str]:
    "Names of the top-level functions and classes a cell defines."
    try: tree = ast.parse(_parsable(text))
    except SyntaxError: return re.findall(r'^(?:async\s+)?(?:def|class)\s+(\w+)', text, re.M)
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [n.name for n in tree.body if isinstance(n, kinds)]


def measure(cells: list[dict]) -> dict:
    "The raw counts for one notebook's cells (see the module docstring)."
    r = dict(export_lines=[], multi=0, defs=0, shown=0, md_words=[], code=0, long=0, unshown=[])
    for i, c in enumerate(cells):
        text = src(c)
        if c.get('cell_type') == 'markdown': r['md_words'].append(len(text.split()))
        if c.get('cell_type') != 'code': continue
        lines = text.splitlines()
        r['code'] += len(lines); r['long'] += sum(len(l) > 120 for l in lines)
        if not is_export(c): continue
        r['export_lines'].append(len(code_lines(text)))
        names = definitions(text)
        r['multi'] += len(names) >= 2
        after = []
        for d in cells[i+1:]:
            if is_export(d): break
            if d.get('cell_type') == 'code': after.append(src(d))
        after = '\n'.join(after)
        for n in names:
            r['defs'] += 1
            if re.search(rf'(?<![\w]){re.escape(n)}(?!\w)', after): r['shown'] += 1
            else: r['unshown'].append(n)
    return r


def merge(rs: list[dict]) -> dict:
    out = dict(export_lines=[], multi=0, defs=0, shown=0, md_words=[], code=0, long=0, unshown=[])
    for r in rs:
        for k, v in r.items(): out[k] = out[k] + v
    return out


def _pct(xs: list[int], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0


def figures(r: dict) -> dict:
    "The five figures from raw counts."
    n = len(r['export_lines'])
    return dict(cells=n, lines=median(r['export_lines']) if n else 0, p90=_pct(r['export_lines'], 0.9),
                multi=r['multi'] / n if n else 0.0, in_use=r['shown'] / r['defs'] if r['defs'] else 1.0,
                md_median=median(r['md_words']) if r['md_words'] else 0, md_max=max(r['md_words'], default=0),
                long=r['long'] / r['code'] if r['code'] else 0.0)


def misses(f: dict) -> list[str]:
    "The targets a set of figures misses."
    t, out = TARGETS, []
    if f['lines'] > t['lines']: out.append(f"median exported cell {f['lines']} lines > {t['lines']}")
    if f['multi'] > t['multi']: out.append(f"{f['multi']:.0%} of exported cells have >= 2 definitions > {t['multi']:.0%}")
    if f['in_use'] < t['in_use']: out.append(f"{f['in_use']:.0%} of definitions shown in use < {t['in_use']:.0%}")
    if f['md_median'] > t['md_median']: out.append(f"median markdown cell {f['md_median']} words > {t['md_median']}")
    if f['md_max'] > t['md_max']: out.append(f"a markdown cell of {f['md_max']} words > {t['md_max']}")
    if f['long'] > t['long']: out.append(f"{f['long']:.1%} of code lines over 120 characters > {t['long']:.0%}")
    return out


def row(name: str, f: dict) -> str:
    return (f"{name:<22}{f['cells']:>5} {f['lines']:>6} {f['p90']:>4} {f['multi']:>8.0%} {f['in_use']:>7.0%}"
            f" {f['md_median']:>6} {f['md_max']:>6} {f['long']:>6.1%}")


def numbered(nbs: Path) -> list[Path]:
    return sorted(p for p in nbs.glob('*.ipynb') if _re_numbered.match(p.name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='*', type=Path, help='notebooks to measure (default: nbs/NN_*.ipynb)')
    ap.add_argument('--check', action='store_true', help='exit 1 when the total misses a target')
    ap.add_argument('--unshown', action='store_true', help='list the definitions not shown in use')
    a = ap.parse_args(argv)
    paths = a.notebooks or numbered(ROOT/'nbs')
    print(f"{'notebook':<22}{'cells':>5} {'lines':>6} {'p90':>4} {'defs>=2':>8} {'in use':>7} {'md med':>6}"
          f" {'md max':>6} {'>120':>6}")
    rs = []
    for p in paths:
        try: cells = json.loads(p.read_text(encoding='utf-8'))['cells']
        except (OSError, ValueError, KeyError) as e:
            print(f'{p}: not a readable notebook ({e}); check the path', file=sys.stderr)
            return 2
        r = measure(cells); rs.append(r)
        print(row(p.stem, figures(r)))
        if a.unshown and r['unshown']: print(' ' * 4 + 'not shown in use: ' + ', '.join(r['unshown']))
    total = figures(merge(rs))
    t = TARGETS
    print(row('total', total))
    print(f"{'target':<22}{'':>5} {'<=' + str(t['lines']):>6} {'':>4} {'<=25%':>8} {'>=75%':>7} {'<=35':>6}"
          f" {'<=300':>6} {'<=2%':>6}")
    bad = misses(total)
    print('misses: ' + '; '.join(bad) if bad else 'all targets met')
    return 1 if a.check and bad else 0


if __name__ == '__main__':
    sys.exit(main())
