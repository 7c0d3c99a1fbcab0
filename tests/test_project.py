"Packaging and nbdev hygiene: notebooks clean, library in sync, the docs build's processing, fresh install."
import ast, json, os, subprocess, sys, zipfile
import pytest
from conftest import ROOT, BIN, copy_project

def _run(cmd, cwd, **kw):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r

def _tree(root, sub, pat):
    return {p.relative_to(root): p.read_bytes() for p in sorted((root/sub).glob(pat))}

@pytest.mark.slow
def test_notebooks_clean_and_library_in_sync(tmp_path):
    "Running nbdev-clean and nbdev-export on a copy changes nothing: notebooks are clean, the library is in sync."
    cp = copy_project(tmp_path)
    nbs0, lib0 = _tree(cp, 'nbs', '*.ipynb'), _tree(cp, 'imgcls_course', '*.py')
    _run([BIN/'nbdev-clean'], cp)
    dirty = [str(k) for k, v in _tree(cp, 'nbs', '*.ipynb').items() if nbs0[k] != v]
    assert not dirty, f"Notebooks not clean (run nbdev-clean): {dirty}"
    _run([BIN/'nbdev-export'], cp)
    lib1 = _tree(cp, 'imgcls_course', '*.py')
    changed = sorted(str(k) for k in set(lib0) | set(lib1) if lib0.get(k) != lib1.get(k))
    assert not changed, f"Library out of sync with notebooks (run nbdev-export): {changed}"

def test_every_notebook_has_title_and_subtitle():
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        src = ''.join(cells[0]['source'])
        assert cells[0]['cell_type'] == 'markdown' and src.startswith('# '), f"{nb.name}: first cell must be '# Title'"
        assert '\n> ' in src, f"{nb.name}: the title needs a '> subtitle' line"

def test_sidebar_lists_every_notebook():
    side = (ROOT/'nbs'/'sidebar.yml').read_text()
    missing = [nb.name for nb in (ROOT/'nbs').glob('*.ipynb') if nb.name not in side]
    assert not missing, f"Notebooks missing from nbs/sidebar.yml: {missing}"
    listed = [l.strip()[2:] for l in side.splitlines() if l.strip().startswith('- ') and l.strip().endswith('.ipynb')]
    assert all((ROOT/'nbs'/n).exists() for n in listed), "sidebar.yml names a notebook that does not exist"

def _public_callables(modfile):
    tree = ast.parse(modfile.read_text())
    alls = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, 'id', None) == '__all__' for t in n.targets)), [])
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return [a for a in alls if a in defs]

@pytest.mark.slow
def test_docs_processing_documents_every_export(docs_proc):
    "nbdev-proc-nbs (what the docs build runs before quarto; conftest's `docs_proc` runs it once) succeeds and gives each exported function a doc entry."
    proc = docs_proc
    assert (proc/'_quarto.yml').exists() and (proc/'sidebar.yml').exists()
    docs = {}
    for nb in proc.glob('*.ipynb'):
        for c in json.loads(nb.read_text())['cells']:
            src = ''.join(c['source'])
            if 'show_doc(' in src:
                md = ''.join(''.join(o.get('data', {}).get('text/markdown', '')) for o in c.get('outputs', []))
                docs[src.split('show_doc(')[1].split(')')[0].strip()] = md
    missing, empty = [], []
    for mod in sorted((ROOT/'imgcls_course').glob('*.py')):
        if mod.name.startswith('_'): continue
        for name in _public_callables(mod):
            if name not in docs: missing.append(f"{mod.stem}.{name}")
            elif name not in docs[name]: empty.append(f"{mod.stem}.{name}")
    assert not missing, f"No doc entry (show_doc) for: {missing}"
    assert not empty, f"Empty doc entry for: {empty}"

@pytest.mark.slow
def test_fresh_install_imports(tmp_path):
    "A built wheel, installed on its own into a fresh folder, imports every module and declares the CLI."
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path/'w'), str(ROOT)], tmp_path)
    whl = next((tmp_path/'w').glob('imgcls_course-*.whl'))
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        ep = next(n for n in names if n.endswith('entry_points.txt'))
        assert 'imgcls-course = imgcls_course.cli:main' in z.read(ep).decode()
    mods = sorted(p.stem for p in (ROOT/'imgcls_course').glob('*.py') if p.stem != '__init__')
    assert all(f'imgcls_course/{m}.py' in names for m in mods), "a module is missing from the wheel"
    _run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(tmp_path/'site'), str(whl)], tmp_path)
    code = ("import importlib, imgcls_course, sys; "
            f"assert imgcls_course.__file__.startswith({str(tmp_path/'site')!r}), imgcls_course.__file__; "
            f"[importlib.import_module('imgcls_course.'+m) for m in {mods!r}]; print(imgcls_course.__version__)")
    env = {**os.environ, 'PYTHONPATH': str(tmp_path/'site')}
    r = _run([sys.executable, '-c', code], tmp_path, env=env)
    assert r.stdout.strip()
