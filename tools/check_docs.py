#!/usr/bin/env python
"""Check what nbdev itself does not about the docs and the README (run by .ci/run after `nbdev-clean` and
`git diff --exit-code nbs`, which check that the notebooks are clean).

    python tools/check_docs.py               # all checks; exit 1 listing every problem
    python tools/check_docs.py --fix-readme  # first regenerate README.md from nbs/index.ipynb, then check

Checks:
 1. nbs/_quarto.yml's hand-written sidebar: every entry exists, every notebook in nbs/ (except `_*`) is listed (the
    list is derived from the folder, so a new notebook must be added to the sidebar), numbered notebooks in reading
    order, no entry twice; the filters and css it names exist.
 2. Every notebook opens with '# Title' and a '> description' line, and (if it imports melanoma_nb) has the hidden
    Colab/Kaggle install cell before that import.
 3. Every internal link and image in the notebooks' markdown and in README.md resolves: relative paths to files,
    `*.html` pages to notebooks, links to the hosted docs to notebooks, links to this repository on GitHub (including
    Colab/Kaggle launch links) to files in the checkout.
 4. README.md is exactly what tools/make_readme.py generates from nbs/index.ipynb.
 5. On a fresh Kaggle/Colab session the install cell is enough: it installs `melanoma_nb[notebooks]`, and every module
    a notebook imports is in the standard library, comes with the Jupyter kernel (ipykernel), or is installed by the
    project's dependencies plus the `notebooks` extra (read from the installed packages' metadata).
 6. CONTRIBUTING.md describes what exists: its module table has a row for every module in melanoma_nb/ (except
    `_*`), every notebook and module a row names exists and the notebook exports that module (`#| default_exp`), and
    every name its module contracts write as a call (`name(...)`) is defined or imported at the top level of the
    module its paragraph names (read with `ast`, nothing imported).
"""
from __future__ import annotations

import argparse, json, re, sys
from pathlib import Path
from urllib.parse import urlsplit, parse_qs, unquote

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_readme  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
INSTALL_MARK = "find_spec('melanoma_nb')"
_re_num = re.compile(r'^(\d+)[a-zA-Z0-9]*_')
_re_md_link = re.compile(r'(!?)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_re_img_tag = re.compile(r'<img\s[^>]*?src\s*=\s*["\']([^"\']+)["\']', re.I)
_re_href_tag = re.compile(r'<a\s[^>]*?href\s*=\s*["\']([^"\']+)["\']', re.I)
_re_autolink = re.compile(r'<(https?://[^>\s]+)>')

class Report:
    def __init__(self): self.problems, self.notes = [], []
    def fail(self, where, msg):
        if f'{where}: {msg}' not in self.problems: self.problems.append(f'{where}: {msg}')
    def note(self, msg): self.notes.append(msg)


def load_cfg(root: Path = ROOT) -> dict:
    cfg = make_readme.project_config(root)
    d = make_readme.tomllib.loads((root/'pyproject.toml').read_text(encoding='utf-8'))
    nbdev = d.get('tool', {}).get('nbdev', {})
    git_url = (d.get('project', {}).get('urls', {}).get('Repository') or '').rstrip('/')
    m = re.match(r'https://github\.com/([^/]+/[^/]+)$', git_url)
    cfg.update(repo=m.group(1) if m else '', branch=nbdev.get('branch', 'main'), lib_path=nbdev.get('lib_path', 'melanoma_nb'),
               custom_sidebar=str(nbdev.get('custom_sidebar', False)).lower() in ('true', '1', 'yes'))
    return cfg


def notebooks(nbs: Path) -> list[Path]:
    "The notebooks nbdev renders: nbs/*.ipynb except names starting with '_' or '.'."
    return sorted(p for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))


def read_nb(p: Path, rep: Report):
    try: return json.loads(p.read_text(encoding='utf-8'))
    except Exception as e:
        rep.fail(rel(p), f'not a readable notebook ({e})')
        return None


def rel(p: Path) -> str:
    try: return str(Path(p).resolve().relative_to(ROOT))
    except ValueError: return str(p)


def src(cell) -> str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else s


# 1. Quarto configuration ---------------------------------------------------------------------------------------
def sidebar_entries(contents) -> list[str]:
    "Files named in a Quarto sidebar `contents` list, in order."
    out = []
    for item in contents or []:
        if isinstance(item, str): out.append(item)
        elif isinstance(item, dict):
            for k in ('href', 'file'):
                if isinstance(item.get(k), str): out.append(item[k])
            out += sidebar_entries(item.get('contents'))
    return out


def check_quarto(root: Path, cfg: dict, rep: Report) -> dict:
    nbs = root/cfg['nbs_path']
    qy = nbs/'_quarto.yml'
    if not qy.exists():
        rep.fail(rel(qy), 'missing: the docs site has no configuration')
        return {}
    try: q = yaml.safe_load(qy.read_text(encoding='utf-8')) or {}
    except yaml.YAMLError as e:
        rep.fail(rel(qy), f'not valid YAML: {e}')
        return {}
    sb = (q.get('website') or {}).get('sidebar')
    if isinstance(sb, list): sb = sb[0] if sb else {}
    entries = sidebar_entries((sb or {}).get('contents'))
    if not entries: rep.fail(rel(qy), 'website.sidebar.contents lists no pages')
    for e in entries:
        if re.match(r'^[a-z]+://', e) or e in ('auto',): continue
        if not (nbs/e).exists(): rep.fail(rel(qy), f"sidebar entry '{e}' does not exist in {cfg['nbs_path']}/")
    listed = {Path(e).name for e in entries}
    for p in notebooks(nbs):
        if p.name not in listed: rep.fail(rel(qy), f"notebook '{p.name}' is not in the sidebar: add it (reading order)")
    nums = [(int(_re_num.match(Path(e).name).group(1)), e) for e in entries if _re_num.match(Path(e).name)]
    if nums != sorted(nums): rep.fail(rel(qy), f'numbered notebooks are not in reading order: {[e for _, e in nums]}')
    if len({e for e in entries}) != len(entries): rep.fail(rel(qy), 'a sidebar entry is listed twice')
    mf = q.get('metadata-files') or []
    if 'nbdev.yml' not in mf: rep.fail(rel(qy), "metadata-files must include nbdev.yml (site URL, repo, title)")
    if 'sidebar.yml' in mf:
        rep.fail(rel(qy), "metadata-files includes sidebar.yml: nbdev regenerates that file in name order and it "
                          "would be merged with the hand-written sidebar; remove it")
    if not cfg['custom_sidebar']:
        rep.note("pyproject.toml [tool.nbdev] has no `custom_sidebar = true`: nbdev-docs will write an unused "
                 "nbs/sidebar.yml (harmless, but set it to keep the tree clean)")
    for f in q.get('filters') or []:
        name = f if isinstance(f, str) else (f.get('path') if isinstance(f, dict) else None)
        if name and not name.startswith('quarto') and not (nbs/name).exists():
            rep.fail(rel(qy), f"filter '{name}' does not exist in {cfg['nbs_path']}/")
        if name and name.startswith('_'):
            rep.fail(rel(qy), f"filter '{name}' starts with '_': nbdev does not copy such files to the render folder")
    css = ((q.get('format') or {}).get('html') or {}).get('css')
    for c in ([css] if isinstance(css, str) else css or []):
        if not (nbs/c).exists(): rep.fail(rel(qy), f"css file '{c}' does not exist in {cfg['nbs_path']}/")
    return q


# 2. structure --------------------------------------------------------------------------------------------------
_re_dir = re.compile(r'^\s*#\|\s*([\w-]+)')


def check_structure(p: Path, nb: dict, rep: Report):
    cells = nb.get('cells', [])
    first = cells[0] if cells else None
    if first is None or first.get('cell_type') != 'markdown':
        rep.fail(rel(p), "must open with a markdown cell '# Title' followed by '> one-line description'")
    else:
        lines = [l.strip() for l in src(first).splitlines() if l.strip()]
        if not lines or not re.match(r'^# \S', lines[0]):
            rep.fail(rel(p), "first cell must start with a '# Title' line (one '#')")
        if not any(re.match(r'^> \S', l) for l in lines[1:]):
            rep.fail(rel(p), "first cell must hold a '> one-line description' line after the title")
    code = [c for c in cells if c.get('cell_type') == 'code' and src(c).strip()]
    imp = next((i for i, c in enumerate(code)
                if re.search(r'^\s*(from\s+melanoma_nb[\s.]|import\s+melanoma_nb)', src(c), re.M)), None)
    if imp is not None:
        inst = next((i for i, c in enumerate(code) if INSTALL_MARK in src(c)), None)
        if inst is None or inst > imp:
            rep.fail(rel(p), 'imports melanoma_nb without the hidden Colab/Kaggle install cell before it '
                             '(copy it from CONTRIBUTING.md)')
        elif not any(d == 'hide' for d in (m.group(1) for m in map(_re_dir.match, src(code[inst]).splitlines()) if m)):
            rep.fail(rel(p), 'the Colab/Kaggle install cell must be hidden in the docs (#| hide)')


# 5. what a fresh hosted session has ----------------------------------------------------------------------------
def _canon(name: str) -> str: return re.sub(r'[-_.]+', '-', name).lower()

def _requirement_closure(roots: list[str], rep: Report) -> set[str]:
    "Canonical names of `roots` and everything they require (for no extra), from the installed metadata."
    from importlib import metadata
    from packaging.requirements import Requirement
    seen, stack = set(), [Requirement(r) for r in roots]
    while stack:
        req = stack.pop()
        name = _canon(req.name)
        if name in seen: continue
        seen.add(name)
        try: reqs = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            rep.fail('pyproject.toml', f"requirement {req.name!r} is not installed here, so what it brings cannot be "
                                       "checked: pip install -e '.[dev,notebooks]'")
            continue
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({'extra': ''}): stack.append(r)
    return seen

def _imports(code: str) -> set[str]:
    "Top-level names of the absolute imports in a cell (IPython magics and shell lines dropped)."
    import ast
    lines = [l for l in code.splitlines() if not l.lstrip().startswith(('%', '!'))]
    try: tree = ast.parse('\n'.join(lines))
    except SyntaxError: return set()
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import): out |= {a.name.split('.')[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and not n.level and n.module: out.add(n.module.split('.')[0])
    return out

def check_hosted_imports(root: Path, nbs_json: dict, rep: Report):
    from importlib import metadata
    proj = make_readme.tomllib.loads((root/'pyproject.toml').read_text(encoding='utf-8')).get('project', {})
    extra = proj.get('optional-dependencies', {}).get('notebooks')
    if extra is None:
        rep.fail('pyproject.toml', "no 'notebooks' extra: it lists what the notebooks import beyond the library")
        return
    have = _requirement_closure(list(proj.get('dependencies', [])) + list(extra) + ['ipykernel'], rep)
    dists = metadata.packages_distributions()
    for p, nb in nbs_json.items():
        code = [src(c) for c in nb.get('cells', []) if c.get('cell_type') == 'code']
        inst = next((c for c in code if INSTALL_MARK in c), None)
        if inst is not None and 'melanoma_nb[notebooks]' not in inst:
            rep.fail(rel(p), "the install cell must install 'melanoma_nb[notebooks]' (copy it from CONTRIBUTING.md)")
        for mod in sorted(set().union(*map(_imports, code)) - set(sys.stdlib_module_names) - {'melanoma_nb', '__future__'}):
            names = dists.get(mod)
            if not names:
                rep.fail(rel(p), f"imports {mod}, which no installed package provides: add its package to the "
                                 "'notebooks' extra in pyproject.toml and install it")
            elif not any(_canon(d) in have for d in names):
                rep.fail(rel(p), f"imports {mod} (package {names[0]}), which a fresh Kaggle/Colab session does not get "
                                 f"from the install cell: add {names[0]} to the 'notebooks' extra in pyproject.toml")


# 3. links ------------------------------------------------------------------------------------------------------
def md_targets(text: str) -> list[tuple[str, bool]]:
    "(target, is_image) for markdown links/images and HTML <a>/<img> in `text`, skipping fenced and inline code."
    kept, in_code = [], False
    for line in text.splitlines():
        if re.match(r'^\s*(```|~~~)', line): in_code = not in_code; continue
        if not in_code: kept.append(re.sub(r'`[^`]*`', '', line))
    t = '\n'.join(kept)
    res = [(m.group(2), m.group(1) == '!') for m in _re_md_link.finditer(t)]
    res += [(u, True) for u in _re_img_tag.findall(t)] + [(u, False) for u in _re_href_tag.findall(t)]
    res += [(u, False) for u in _re_autolink.findall(t)]
    return res


class LinkChecker:
    def __init__(self, root: Path, cfg: dict, rep: Report):
        self.root, self.cfg, self.rep = root, cfg, rep
        self.nbs = root/cfg['nbs_path']
        self.pages = {make_readme.nb_html_name(p.name): p for p in notebooks(self.nbs)}
        self.doc_url = cfg['doc_url']
        r = re.escape(cfg['repo'])
        self.re_gh = re.compile(rf'^https://github\.com/{r}/(?:blob|tree|raw)/{re.escape(cfg["branch"])}/(.+)$')
        self.re_colab = re.compile(rf'^https://colab\.research\.google\.com/github/{r}/blob/{re.escape(cfg["branch"])}/(.+)$')
        self.re_raw = re.compile(rf'^https://raw\.githubusercontent\.com/{r}/{re.escape(cfg["branch"])}/(.+)$')
        self.external = 0

    def repo_file(self, path: str, where: str, target: str):
        if not (self.root/unquote(path)).exists():
            self.rep.fail(where, f"link '{target}' points at '{path}', which is not in the repository")

    def page(self, name: str, where: str, target: str):
        if name in ('', 'index.html') and 'index.html' in self.pages: return
        if name not in self.pages and not (self.nbs/name).exists():
            self.rep.fail(where, f"link '{target}': no notebook renders to '{name}' (pages: {sorted(self.pages)})")

    def check(self, target: str, is_image: bool, base: Path, where: str, site: bool):
        "`base`: folder relative links start from; `site`: the link is on the docs site (must stay inside nbs/)."
        t = target.strip()
        if not t or t.startswith('#') or t.startswith('data:'): return
        u = urlsplit(t)
        if u.scheme in ('http', 'https'):
            url = t.split('#')[0].split('?')[0] if u.netloc != 'kaggle.com' else t
            base_url = self.doc_url.rstrip('/')
            if base_url and (url == base_url or url.startswith(base_url + '/')):
                return self.page(url[len(base_url) + 1:], where, t)
            for rx in (self.re_gh, self.re_colab, self.re_raw):
                m = rx.match(url)
                if m: return self.repo_file(m.group(1), where, t)
            if u.netloc in ('kaggle.com', 'www.kaggle.com') and u.path.startswith('/kernels/welcome'):
                srcs = parse_qs(u.query).get('src', [])
                if not srcs: return self.rep.fail(where, f"Kaggle launch link '{t}' has no src=")
                return self.check(srcs[0], False, base, where, site)
            if re.match(rf'^https://github\.com/{re.escape(self.cfg["repo"])}/(blob|tree|raw)/', url):
                return self.rep.fail(where, f"link '{t}' points at a branch other than '{self.cfg['branch']}'")
            self.external += 1
            return
        if u.scheme or u.netloc: self.external += 1; return  # mailto:, ftp:, ...
        path = unquote(u.path)
        if path.startswith('/'):
            return self.rep.fail(where, f"link '{t}' is absolute; use a path relative to the page")
        f = (base/path).resolve()
        if site:
            try: f.relative_to(self.nbs.resolve())
            except ValueError:
                return self.rep.fail(where, f"link '{t}' leaves {self.cfg['nbs_path']}/, which is all the docs site "
                                            f"has; link to https://github.com/{self.cfg['repo']}/blob/"
                                            f"{self.cfg['branch']}/... instead")
        if f.suffix == '.html' and not f.exists():
            name = str(f.relative_to(self.nbs.resolve())) if site else f.name
            return self.page(name, where, t)
        if not f.exists(): self.rep.fail(where, f"{'image' if is_image else 'link'} '{t}' does not resolve to a file")


def check_links(root: Path, cfg: dict, nbs_json: dict, rep: Report) -> LinkChecker:
    lc = LinkChecker(root, cfg, rep)
    for p, nb in nbs_json.items():
        for i, c in enumerate(nb.get('cells', [])):
            if c.get('cell_type') != 'markdown': continue
            for target, is_img in md_targets(src(c)):
                lc.check(target, is_img, p.parent, f'{rel(p)} cell {i}', site=True)
    readme = root/'README.md'
    if readme.exists():
        for target, is_img in md_targets(readme.read_text(encoding='utf-8')):
            lc.check(target, is_img, root, 'README.md', site=False)
    return lc


# 4. README drift -----------------------------------------------------------------------------------------------
def check_readme(root: Path, rep: Report):
    readme = root/'README.md'
    try: want = make_readme.render(root)
    except make_readme.ReadmeError as e:
        return rep.fail('nbs/index.ipynb', f'README cannot be generated: {e}')
    have = readme.read_text(encoding='utf-8') if readme.exists() else None
    if have is None: return rep.fail('README.md', 'missing: run `python tools/make_readme.py`')
    if have != want:
        import difflib
        d = [l for l in difflib.unified_diff(have.splitlines(), want.splitlines(), lineterm='', n=0)
             if l[:1] in '+-' and l[:3] not in ('+++', '---')][:6]
        rep.fail('README.md', 'differs from what nbs/index.ipynb generates. README.md is generated: edit '
                              'nbs/index.ipynb, then run `python tools/make_readme.py` (or `python tools/check_docs.py '
                              '--fix-readme`). First differing lines:\n      ' + '\n      '.join(d))


# 6. CONTRIBUTING.md against the package ------------------------------------------------------------------------
_re_contract = re.compile(r'^`(\w+)` \(\d+[a-z]?\)')

def default_exp(nb: dict) -> str | None:
    "The module a notebook exports (its `#| default_exp` line), or None."
    for c in nb.get('cells', []):
        if c.get('cell_type') != 'code': continue
        m = re.search(r'^#\|\s*default_exp\s+([\w.]+)', src(c), re.M)
        if m: return m.group(1)
    return None


def top_level_names(py: Path) -> set[str]:
    "Names a module defines or imports at its top level (functions, classes, assignments, imports), read with `ast`."
    import ast
    out = set()
    for n in ast.parse(py.read_text(encoding='utf-8')).body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)): out |= {(a.asname or a.name).split('.')[0] for a in n.names}
        elif isinstance(n, (ast.Assign, ast.AnnAssign)):
            for tg in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                out |= {x.id for x in ast.walk(tg) if isinstance(x, ast.Name)}
    return out


def module_table(text: str) -> list[tuple[list[str], list[str]]] | None:
    "(notebooks, modules) of each row of the table headed `| Notebook | Module | ...`, or None without one."
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if re.match(r'^\|\s*Notebook\s*\|\s*Module\s*\|', l)), None)
    if start is None: return None
    rows = []
    for l in lines[start + 2:]:
        if not l.startswith('|'): break
        cells = l.split('|')
        rows.append((re.findall(r'`([^`]+)`', cells[1]), re.findall(r'`([^`]+)`', cells[2])))
    return rows


def check_contributing(root: Path, cfg: dict, rep: Report):
    f, lib, nbs = root/'CONTRIBUTING.md', root/cfg['lib_path'], root/cfg['nbs_path']
    if not f.exists(): return rep.fail('CONTRIBUTING.md', 'missing: it describes the modules and how to change them')
    text = f.read_text(encoding='utf-8')
    rows = module_table(text)
    if rows is None: return rep.fail('CONTRIBUTING.md', "no module table (a table headed '| Notebook | Module |')")
    listed = set()
    for nbs_, mods in rows:
        for n in nbs_:
            if not (nbs/f'{n}.ipynb').exists():
                rep.fail('CONTRIBUTING.md', f"the module table names the notebook '{n}', but {cfg['nbs_path']}/{n}.ipynb does not exist")
        for m in mods:
            listed.add(m)
            if not (lib/f'{m}.py').exists():
                rep.fail('CONTRIBUTING.md', f"the module table names the module '{m}', but {lib.name}/{m}.py does not exist")
        if len(nbs_) == len(mods):
            for n, m in zip(nbs_, mods):
                if (nbs/f'{n}.ipynb').exists() and (e := default_exp(json.loads((nbs/f'{n}.ipynb').read_text(encoding='utf-8')))) != m:
                    rep.fail('CONTRIBUTING.md', f"the module table pairs the notebook '{n}' with the module '{m}', but "
                                                f"the notebook exports {e!r} (its #| default_exp line)")
    for py in sorted(lib.glob('*.py')):
        if not py.stem.startswith('_') and py.stem not in listed:
            rep.fail('CONTRIBUTING.md', f"the module table has no row for the module '{py.stem}' ({lib.name}/{py.name}): "
                                        "add one (notebook, module, what it holds)")
    body = text.split('## Module contracts', 1)
    if len(body) < 2: return rep.fail('CONTRIBUTING.md', "no '## Module contracts' section")
    blocks, cur = [], None
    for l in body[1].splitlines():
        if l.startswith('## '): break
        if _re_contract.match(l): cur = (re.findall(r'`(\w+)` \(\d+[a-z]?\)', l), []); blocks.append(cur)
        if cur: cur[1].append(l)
    for mods, ls in blocks:
        have = set()
        for m in mods:
            if (lib/f'{m}.py').exists(): have |= top_level_names(lib/f'{m}.py')
            else: rep.fail('CONTRIBUTING.md', f"a module contract names the module '{m}', but {lib.name}/{m}.py does not exist")
        for name in sorted(set(re.findall(r'`([A-Za-z_]\w*)\(', '\n'.join(ls))) - have):
            rep.fail('CONTRIBUTING.md', f"the contract of {', '.join(mods)} names {name}(...), which "
                                        f"{' or '.join(f'{lib.name}/{m}.py' for m in mods)} does not define")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split('\n\n')[0])
    ap.add_argument('--fix-readme', action='store_true', help='regenerate README.md from nbs/index.ipynb first')
    a = ap.parse_args(argv)
    if a.fix_readme:
        rc = make_readme.main([])
        if rc: return rc
    rep, cfg = Report(), load_cfg(ROOT)
    nbs = ROOT/cfg['nbs_path']
    paths = notebooks(nbs)
    if not paths: rep.fail(cfg['nbs_path'], 'no notebooks found')
    check_quarto(ROOT, cfg, rep)
    nbs_json = {p: nb for p in paths if (nb := read_nb(p, rep)) is not None}
    for p, nb in nbs_json.items(): check_structure(p, nb, rep)
    lc = check_links(ROOT, cfg, nbs_json, rep)
    check_hosted_imports(ROOT, nbs_json, rep)
    check_readme(ROOT, rep)
    check_contributing(ROOT, cfg, rep)
    for n in rep.notes: print(f'note: {n}')
    sys.stdout.flush()
    if rep.problems:
        print(f'check_docs: {len(rep.problems)} problem(s):', file=sys.stderr)
        for pr in rep.problems: print(f'  - {pr}', file=sys.stderr)
        return 1
    print(f'check_docs: {len(paths)} notebooks and README.md OK (sidebar, title, install cell, links '
          f'[{lc.external} external links not fetched], README in step with index.ipynb, imports on a fresh Kaggle/Colab session, '
          f'CONTRIBUTING.md against the package)')
    return 0


if __name__ == '__main__': sys.exit(main())
