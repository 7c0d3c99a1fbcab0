"""The lessons' explorers as a learner runs them: JupyterLab in a real browser.

`softmax_explorer` (lesson 20) and `gradcam_explorer` (lesson 41) are `#| eval: false` in the lessons, and nbdev-test
builds them in a kernel with no front-end. Here JupyterLab (the project's `.venv`, ipywidgets 8 with JupyterLab 4's
widget manager) runs on localhost with a token, its config, data, runtime, settings and workspace folders in a temp
folder (nothing of the user's is read or written), and headless Chromium drives it with Selenium.

Each lesson is opened as a notebook that the test builds from the lesson itself (running the whole lesson first
would take minutes): the lesson's opening import cells, the cell that defines the names its explorer call uses (41: the
model, the photos and the class names), `from <module> import *` (the exported library, instead of the lesson's
`#| export` cells) and the lesson's own `#| eval: false` explorer cell, unchanged. The test runs every cell (Run All),
waits until the kernel is idle, checks that the explorer shows its first figure and that no menu is blank (41's
class menu was, and its figure missing, until set up right), then works the widgets as a learner does (drags a
slider's handle with the mouse, picks another entry in a menu) and checks after each move that the explorer's
figure (the `<img>` in its output) was redrawn with other bytes, and that exactly one figure is shown.

It fails on an error in a cell, on any error in the browser's console log (JavaScript exceptions, failed requests),
and on widget error text in the page ("Error displaying widget", "Model not found", ...). A failure message says
what was expected, what the page showed, and where a screenshot was saved.
"""
import ast, builtins, importlib, json, os, re, socket, subprocess, time, secrets, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT, BIN, CHROMIUM_FLAGS, chromium, find_program

WIDGET_ERRORS = ('Error displaying widget', 'Model not found', 'model not found', 'Failed to load model class',
                 'Could not create a model', 'Could not create a view', 'Error rendering', 'Class not found')

LESSONS = {   # name: (lesson notebook, its module, the explorer's function)
    'softmax': ('20_cross_entropy.ipynb', 'imgcls_course.losses', 'softmax_explorer'),
    'gradcam': ('41_gradcam.ipynb', 'imgcls_course.gradcam', 'gradcam_explorer'),
}

# ---------------------------------------------------------------- what runs where
def chromedriver()->str:
    "Path of chromedriver (Debian's `chromium-driver`), which Selenium drives Chromium with."
    return find_program(('chromedriver', '/usr/bin/chromedriver', '/usr/lib/chromium/chromedriver'), 'chromium-driver')

def need_module(name:str):
    "Import `name`; fails in CI (the dev extra installs it), skips elsewhere."
    try: return importlib.import_module(name)
    except ImportError:
        if os.environ.get('CI'): pytest.fail(f"CI must install {name} (the dev extra has it)")
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")

# ---------------------------------------------------------------- the notebooks, built from the lessons
def _src(c): return ''.join(c['source'])
def _body(src): return '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith('#|'))

def _is_imports(src:str)->bool:
    "A cell of imports only (and `warnings` filters, which belong with them)."
    try: tree = ast.parse(_body(src))
    except SyntaxError: return False
    def ok(n):
        if isinstance(n, (ast.Import, ast.ImportFrom)): return True
        f = n.value.func if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) else None
        return isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == 'warnings'
    return bool(tree.body) and all(ok(n) for n in tree.body)

def _assigned(src:str)->set:
    try: tree = ast.parse(_body(src))
    except SyntaxError: return set()
    return {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign))
            for tgt in (n.targets if isinstance(n, ast.Assign) else [n.target]) for t in ast.walk(tgt)
            if isinstance(t, ast.Name)}

def explorer_notebook(lesson:str, module:str, fn:str)->dict:
    "A notebook from `lesson`'s import cells, the cells defining the names its explorer cell uses, and that cell."
    cells = json.loads((ROOT/'nbs'/lesson).read_text())['cells']
    code = [_src(c) for c in cells if c['cell_type'] == 'code']
    i = next((i for i, s in enumerate(code) if s.startswith('#| eval: false') and f'{fn}(' in s
              and f'def {fn}' not in s), None)
    assert i is not None, f"{lesson}: no `#| eval: false` cell calling {fn}(...)"
    explorer = code[i]
    used = {n.id for n in ast.walk(ast.parse(_body(explorer)))
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    have = set(dir(importlib.import_module(module))) | set(dir(builtins))
    head = []                                           # the lesson's opening imports
    for s in code[:i]:
        if _is_imports(s): head.append(s)
        elif _body(s).strip(): break
    setup = [s for s in head if not s.startswith('#| export')]
    for name in sorted(used - have):
        j = next((j for j, s in enumerate(code[:i]) if not s.startswith(('#| export', '#| eval: false'))
                  and name in _assigned(s)), None)
        assert j is not None, f"{lesson}: no cell before the explorer defines {name!r}"
        if code[j] not in setup: setup.append(code[j])
    setup.sort(key=code.index)
    srcs = [s for s in head if s.startswith('#| export')] + setup
    srcs += [f"from {module} import *", explorer]
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'id': f'c{k}', 'metadata': {}, 'outputs': [],
                     'source': s} for k, s in enumerate(srcs)],
          'metadata': {'kernelspec': {'display_name': 'Python 3 (ipykernel)', 'language': 'python', 'name': 'python3'},
                       'language_info': {'name': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}
    return nb

def test_explorer_notebooks_come_from_the_lessons():
    "The notebooks the browser runs hold the lessons' own cells (a quick check, no browser)."
    nb = explorer_notebook(*LESSONS['gradcam'])
    srcs = [c['source'] for c in nb['cells']]
    assert srcs[-1].startswith('#| eval: false') and 'gradcam_explorer(model, photos, cats' in srcs[-1], srcs[-1]
    assert any('model = efficientnet_lite0()' in s for s in srcs), "41's cell that loads the model is missing"
    assert srcs[-2] == 'from imgcls_course.gradcam import *'
    nb = explorer_notebook(*LESSONS['softmax'])
    assert nb['cells'][-1]['source'].startswith('#| eval: false\nsoftmax_explorer('), nb['cells'][-1]['source']
    assert not any('dls = ' in c['source'] for c in nb['cells']), "only the cells the explorer needs"

# ---------------------------------------------------------------- JupyterLab and the browser
def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _tail(p:Path, n=3000)->str: return p.read_text(errors='replace')[-n:] if p.exists() else ''

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "JupyterLab on 127.0.0.1 (a free port, a random token), root a temp folder holding the explorer notebooks."
    chromium(); chromedriver(); need_module('selenium'); need_module('jupyterlab'); need_module('ipywidgets')
    tmp = tmp_path_factory.mktemp('lab')
    root = tmp/'root'; root.mkdir()
    for name, spec in LESSONS.items():
        (root/f'explore_{name}.ipynb').write_text(json.dumps(explorer_notebook(*spec), indent=1))
    jd = {k: tmp/k.lower() for k in ('JUPYTER_CONFIG_DIR', 'JUPYTER_DATA_DIR', 'JUPYTER_RUNTIME_DIR', 'IPYTHONDIR',
                                     'JUPYTERLAB_SETTINGS_DIR', 'JUPYTERLAB_WORKSPACES_DIR', 'MPLCONFIGDIR')}
    for d in jd.values(): d.mkdir()
    notif = jd['JUPYTERLAB_SETTINGS_DIR']/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    notif.parent.mkdir(parents=True)
    notif.write_text(json.dumps({'fetchNews': 'false'}))   # no "news?" toast over the widgets
    env = {k: v for k, v in os.environ.items() if not k.startswith(('JUPYTER', 'IPYTHON'))}
    env.update({k: str(v) for k, v in jd.items()}, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    port, token = free_port(), secrets.token_hex(16)
    log = tmp/'server.log'
    cmd = [str(BIN/'jupyter'), 'lab', '--no-browser', '--allow-root', '--ServerApp.ip=127.0.0.1',
           f'--ServerApp.port={port}', '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}',
           f'--ServerApp.root_dir={root}', '--ServerApp.terminals_enabled=False', '--LabApp.expose_app_in_browser=True',
           '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
           f'--LabApp.user_settings_dir={jd["JUPYTERLAB_SETTINGS_DIR"]}',
           f'--LabApp.workspaces_dir={jd["JUPYTERLAB_WORKSPACES_DIR"]}']
    with open(log, 'w') as lf:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None: pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=5) as r:
                    if r.status == 200: break
            except OSError: pass
            if time.time() - t0 > 90: pytest.fail(f"JupyterLab did not answer on {url} within 90 s:\n{_tail(log)}")
            time.sleep(0.5)
        yield dict(url=url, token=token, root=root, log=log, tmp=tmp)
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)

@pytest.fixture(scope='module')
def browser(lab):
    "Headless Chromium driven by chromedriver, a fresh profile, the console log kept."
    need_module('selenium')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary, driver_path = chromium(), chromedriver()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for f in [*CHROMIUM_FLAGS, '--window-size=1400,1100', f'--user-data-dir={lab["tmp"]/"profile"}']:
        opts.add_argument(f)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    drv = webdriver.Chrome(service=Service(driver_path, log_output=str(lab['tmp']/'chromedriver.log')), options=opts)
    drv.set_script_timeout(60)
    try: yield drv
    finally: drv.quit()

# ---------------------------------------------------------------- what the page shows
JS_STATE = """
const app = window.jupyterapp, w = app && app.shell.currentWidget;
if (!w || !w.context || w.context.path !== arguments[0] || !w.sessionContext) return null;
const k = w.sessionContext.session && w.sessionContext.session.kernel;
const cells = w.content.widgets.filter(c => c.model.type === 'code').map(c => ({
    count: c.model.executionCount,
    errors: c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                   .map(o => o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n'))}));
return {ready: w.context.isReady && w.sessionContext.isReady, status: k ? k.status : null, cells: cells};
"""

class Page:
    "One explorer notebook open in JupyterLab."
    def __init__(self, drv, lab, name):
        self.drv, self.lab, self.name, self.path = drv, lab, name, f'explore_{name}.ipynb'

    def fail(self, msg):
        shot = self.lab['tmp']/f'{self.name}-failure.png'
        try: self.drv.save_screenshot(str(shot))
        except Exception: shot = None
        body = ''
        try: body = self.drv.find_element('css selector', 'body').text[-1500:]
        except Exception: pass
        pytest.fail(f"[{self.path}] {msg}\n--- page text (end):\n{body}\n--- screenshot: {shot}\n"
                    f"--- server log (end):\n{_tail(self.lab['log'], 1500)}", pytrace=False)

    def wait(self, cond, timeout, what):
        "Poll `cond()` until it is truthy; fail with `what` after `timeout` seconds."
        t0, last = time.time(), None
        while time.time() - t0 < timeout:
            try:
                last = cond()
                if last: return last
            except Exception as e: last = f'{type(e).__name__}: {e}'
            time.sleep(0.25)
        self.fail(f"timed out after {timeout} s waiting for {what} (last: {str(last)[:500]})")

    def state(self): return self.drv.execute_script(JS_STATE, self.path)

    def idle(self, timeout=60):
        "Wait until the kernel is idle and every code cell has run; fail on a cell's error."
        def done():
            s = self.state()
            if not s: return False
            errs = [e for c in s['cells'] for e in c['errors']]
            if errs: self.fail("a cell raised:\n" + re.sub(r'\x1b\[[0-9;]*m', '', errs[0])[-2500:])
            return s['status'] == 'idle' and all(c['count'] for c in s['cells'])
        return self.wait(done, timeout, "the kernel to be idle with every cell run")

    def open_and_run(self):
        lab = self.lab
        self.drv.get(f"{lab['url']}/lab/workspaces/{self.name}/tree/{self.path}?reset&token={lab['token']}")
        self.wait(lambda: (s := self.state()) and s['ready'] and s['status'] == 'idle', 90,
                  "JupyterLab to open the notebook and its kernel to start")
        err = self.drv.execute_async_script("const done = arguments[arguments.length - 1];"
                                            "window.jupyterapp.commands.execute('notebook:run-all-cells').then("
                                            "() => done(null), e => done(String(e)));")
        if err: self.fail(f"Run All failed: {err}")
        self.idle(150)

    def explorer(self):
        "The explorer cell's output area (the notebook's last cell)."
        return self.drv.find_elements('css selector', '.jp-Notebook .jp-CodeCell')[-1]

    def figure(self):
        "The `src` of the explorer's one figure (None while there is none); fails when more than one is shown."
        imgs = self.explorer().find_elements('css selector', '.jp-OutputArea img')
        srcs = [i.get_attribute('src') for i in imgs]
        if len(srcs) > 1: self.fail(f"the explorer shows {len(srcs)} figures, not one: an old figure was not cleared")
        return srcs[0] if srcs and srcs[0].startswith('data:image/png;base64,') else None

    def check_clean(self):
        "No widget error text in the page, no error in the browser's console."
        text = self.drv.find_element('css selector', 'body').text
        bad = [e for e in WIDGET_ERRORS if e in text]
        if bad: self.fail(f"widget error text in the page: {bad}")
        logs = [e for e in self.drv.get_log('browser') if e['level'] == 'SEVERE']
        if logs: self.fail("errors in the browser's console:\n" + '\n'.join(e['message'][:400] for e in logs))

    def changes_figure(self, act, what):
        "Do `act()` (a learner's move) and check the explorer's figure was redrawn with other bytes."
        before = self.wait(self.figure, 30, "the explorer's figure")
        act()
        self.wait(lambda: (f := self.figure()) and f != before, 60, f"a new figure after {what}")
        self.idle(60)
        after = self.wait(self.figure, 30, f"the explorer's figure after {what}")
        if after == before: self.fail(f"{what} left the figure unchanged")
        self.check_clean()
        return after

    def widget(self, description, kind):
        "The slider or dropdown of the explorer whose label reads `description`."
        for w in self.explorer().find_elements('css selector', f'.widget-{kind}'):
            if w.find_element('css selector', '.widget-label').text.strip() == description: return w
        self.fail(f"no {kind} labelled {description!r} in the explorer")

    def drag(self, description, dx):
        "Drag the handle of slider `description` by `dx` pixels; return a function that does it."
        from selenium.webdriver.common.action_chains import ActionChains
        def act():
            s = self.widget(description, 'slider')
            before = s.find_element('css selector', '.widget-readout').text
            handle = s.find_element('css selector', '.noUi-handle')
            ActionChains(self.drv).drag_and_drop_by_offset(handle, dx, 0).perform()
            self.wait(lambda: s.find_element('css selector', '.widget-readout').text != before, 10,
                      f"slider {description!r} to move (readout {before!r})")
        return act

    def pick(self, description, index=None, text=None):
        "Pick an entry of dropdown `description`; return a function that does it."
        from selenium.webdriver.support.ui import Select
        def act():
            sel = Select(self.widget(description, 'dropdown').find_element('css selector', 'select'))
            if text is not None: sel.select_by_visible_text(text)
            else: sel.select_by_index(index)
        return act

@pytest.fixture()
def page(lab, browser):
    pages = []
    def open_(name):
        p = Page(browser, lab, name); pages.append(p)
        browser.get_log('browser')                      # start with an empty console log
        p.open_and_run()
        p.check_clean()
        p.wait(p.figure, 30, "the explorer's first figure, after Run All")
        empty = [d.find_element('css selector', '.widget-label').text for d in
                 p.explorer().find_elements('css selector', '.widget-dropdown')
                 if d.find_element('css selector', 'select').get_property('selectedIndex') < 0]
        if empty: p.fail(f"menus that show no choice after Run All: {empty}")
        return p
    yield open_
    for p in pages:   # shut the kernel down (the next explorer gets the CPU), leave the page without a prompt
        try: browser.execute_script("const w = window.jupyterapp.shell.currentWidget; w.context.model.dirty = false;"
                                    "return w.sessionContext.shutdown();")
        except Exception: pass

@pytest.mark.slow
def test_softmax_explorer_in_jupyterlab(page):
    "Lesson 20's explorer: the logit and temperature sliders and the target menu each redraw the figure."
    p = page('softmax')
    p.changes_figure(p.drag('cat', -40), "dragging the 'cat' logit slider")
    p.changes_figure(p.drag('T', 30), "dragging the temperature slider")
    p.changes_figure(p.pick('target', text='dog'), "picking 'dog' as the target")

@pytest.mark.slow
def test_gradcam_explorer_in_jupyterlab(page):
    "Lesson 41's explorer: picking another class and moving the strength slider each redraw the overlay."
    p = page('gradcam')
    p.changes_figure(p.pick('class', index=1), "picking the second class")
    p.changes_figure(p.drag('strength', 30), "dragging the strength slider")
