("Packaging and nbdev hygiene: titles, the sidebar, the docs build's processing, a fresh install, "
 "the course's shape (the sync check is in .ci/run).")
import ast, json, os, re, subprocess, sys, zipfile
import pytest
from conftest import ROOT

def _run(cmd, cwd, **kw):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r

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
    ("nbdev-proc-nbs (what the docs build runs before quarto; conftest's `docs_proc` runs it once) succeeds "
     "and gives each exported function a doc entry.")
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
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
          '-w', str(tmp_path/'w'), str(ROOT)], tmp_path)
    whl = next((tmp_path/'w').glob('imgcls_course-*.whl'))
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        ep = next(n for n in names if n.endswith('entry_points.txt'))
        assert 'imgcls-course = imgcls_course.cli:main' in z.read(ep).decode()
    mods = sorted(p.stem for p in (ROOT/'imgcls_course').glob('*.py') if p.stem != '__init__')
    assert all(f'imgcls_course/{m}.py' in names for m in mods), "a module is missing from the wheel"
    _run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
          '--target', str(tmp_path/'site'), str(whl)], tmp_path)
    code = ("import importlib, imgcls_course, sys; "
            f"assert imgcls_course.__file__.startswith({str(tmp_path/'site')!r}), imgcls_course.__file__; "
            f"[importlib.import_module('imgcls_course.'+m) for m in {mods!r}]; print(imgcls_course.__version__)")
    env = {**os.environ, 'PYTHONPATH': str(tmp_path/'site')}
    r = _run([sys.executable, '-c', code], tmp_path, env=env)
    assert r.stdout.strip()

# ---------------------------------------------------------------- the learner's path (nbs/sidebar.yml's sections)
def _sidebar_sections()->dict:
    "`{section: [notebook, ...]}` from nbs/sidebar.yml (pages before the first section under '')."
    import yaml
    contents = yaml.safe_load((ROOT/'nbs'/'sidebar.yml').read_text())['website']['sidebar']['contents']
    out = {'': []}
    for item in contents:
        if isinstance(item, str): out[''].append(item)
        else: out[item['section']] = list(item['contents'])
    return out

def _cells(name): return json.loads((ROOT/'nbs'/name).read_text())['cells']
def _src(c): return ''.join(c['source'])
def _words(name): return sum(len(_src(c).split()) for c in _cells(name) if c['cell_type'] == 'markdown')

def test_course_lessons_are_book_sized_and_end_with_exercises():
    ("Each lesson of the sidebar's Course section: at most 2,000 words of prose "
     "and an `## Exercises` section with 3-5 numbered tasks, one asking for code.")
    course = _sidebar_sections().get('Course')
    assert course and len(course) >= 8, f"nbs/sidebar.yml needs a 'Course' section with the core lessons: {course}"
    words = {nb: _words(nb) for nb in course}
    assert all(w <= 2000 for w in words.values()), f"core lessons over 2,000 words: {words}"
    assert sum(words.values()) <= 16000, (f"the Course section holds {sum(words.values())} words "
                                          f"(at most 16,000): {words}")
    for nb in course:
        md = '\n'.join(_src(c) for c in _cells(nb) if c['cell_type'] == 'markdown')
        ex = re.search(r'^## Exercises\s*$(.*?)(?=^## |\Z)', md, re.M | re.S)
        assert ex, f"{nb}: no '## Exercises' section"
        tasks = re.findall(r'^\d+\.\s', ex.group(1), re.M)
        assert 3 <= len(tasks) <= 5, f"{nb}: {len(tasks)} numbered exercises (3 to 5)"
        codes = [_src(c) for c in _cells(nb) if c['cell_type'] == 'code']
        assert any(s.lstrip().startswith('#| code-fold: true')
                   for s in codes), f"{nb}: no folded solution (`#| code-fold: true`)"

def test_no_prose_written_by_code():
    "No code cell builds prose with Markdown(...): prose is markdown, numbers are outputs."
    found = [f"{p.name} cell {c.get('id')}" for p in sorted((ROOT/'nbs').glob('*.ipynb'))
             for c in json.loads(p.read_text())['cells']
             if c['cell_type'] == 'code' and re.search(r'\bMarkdown\(', _src(c))]
    assert not found, f"code cells calling Markdown(: {found}"

def test_links_between_notebooks_name_notebooks_not_pages():
    ("A link to a local `.html` page breaks when the notebook is opened in Jupyter: "
     "link the `.ipynb` (nbdev rewrites it for the site).")
    bad = [f"{p.name}: {m}" for p in sorted((ROOT/'nbs').glob('*.ipynb'))
           for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'markdown'
           for m in re.findall(r'\]\((?!https?://)([^)\s]+\.html(?:#[^)\s]*)?)\)', _src(c))]
    assert not bad, f"links to .html pages: {bad}"

def test_deep_dives_are_marked_and_linked_from_the_course():
    "Each notebook of the Deep dives section is titled 'Deep dive: ...' and linked from at least one core lesson."
    side = _sidebar_sections()
    dives, course = side.get('Deep dives', []), side.get('Course', [])
    assert dives, "nbs/sidebar.yml needs a 'Deep dives' section"
    course_md = {nb: '\n'.join(_src(c) for c in _cells(nb) if c['cell_type'] == 'markdown') for nb in course}
    for nb in dives:
        title = _src(_cells(nb)[0]).splitlines()[0]
        assert title.startswith('# Deep dive: '), f"{nb}: title {title!r} should start with '# Deep dive: '"
        assert any(f'({nb}' in md for md in course_md.values()), f"{nb} is linked from no core lesson"

def test_one_notebook_one_module():
    ("Each notebook exports to the module its `default_exp` names, or nothing: "
     "no `#| export other_module`, no export processor.")
    found = []
    for p in sorted((ROOT/'nbs').glob('*.ipynb')):
        for c in json.loads(p.read_text())['cells']:
            m = (re.match(r'\s*#\|\s*(export|exporti|exports)[ \t]+(\S+)', _src(c))
                 if c['cell_type'] == 'code' else None)
            if m: found.append(f"{p.name}: #| {m.group(1)} {m.group(2)}")
    assert not found, f"cells exporting to another module: {found}"
    toml = (ROOT/'pyproject.toml').read_text()
    assert 'export_procs' not in toml, "no nbdev export processor: one notebook, one module"

def test_library_modules_at_most_400_lines():
    "A module a maintainer can read: none over 400 lines (nbdev's own index `_modidx.py` aside)."
    long = {p.name: n for p in (ROOT/'imgcls_course').glob('*.py') if not p.name.startswith('_')
            and (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"

def test_library_lines_at_most_120():
    ("Library lines of at most 120 characters, as `ruff` checks tests/ and bench/; the one exception is the first line "
     "of the `__all__` that nbdev writes (it wraps the list at 120, then puts `__all__ = ` in front).")
    long = [f"{p.name}:{i}" for p in sorted((ROOT/'imgcls_course').glob('*.py')) if p.name != '_modidx.py'
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if len(line) > 120 and not line.startswith('__all__ = [')]
    assert not long, f"library lines over 120 characters: {long}"

def test_notebooks_with_slow_cells_skip_them_in_jupyter():
    ("A notebook with `#| slow` or `#| online` cells has the visible `slow_cells(...)` line before the first of "
     "them, so Jupyter's Run All skips them (04_running); its comment says how many slow cells there are.")
    from imgcls_course.running import cell_flags
    for p in sorted((ROOT/'nbs').glob('*.ipynb')):
        code = [_src(c) for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'code']
        flagged = [i for i, s in enumerate(code) if cell_flags(s) & {'slow', 'online'}]
        if not flagged or p.name == '04_running.ipynb': continue
        line = [i for i, s in enumerate(code) if re.search(r'^slow_cells\(', s, re.M) and 'hide' not in cell_flags(s)]
        assert line and line[0] < flagged[0], f"{p.name}: no visible `slow_cells(...)` line before its first slow cell"
        n_slow = sum('slow' in cell_flags(code[i]) for i in flagged)
        if n_slow: assert f"the {n_slow} `#| slow` cell" in code[line[0]], f"{p.name}: the line should count {n_slow}"
