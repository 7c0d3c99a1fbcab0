import os, shutil, subprocess, sys
from contextlib import contextmanager
from pathlib import Path
import pytest, torch, torch.nn as nn
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from fastai.torch_core import params
from imgcls_course.training import ListDL

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def copy_project(dest:Path)->Path:
    "Copy what git would see of the project (tracked + untracked, not ignored) to `dest`."
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split('\n')
    for f in filter(None, files):
        src = ROOT/f
        if not src.is_file(): continue
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest/f)
    subprocess.run(['git', 'init', '-q'], cwd=dest, check=True)
    return dest

@pytest.fixture(scope='session', autouse=True)
def one_thread():
    "Small tensors: one thread is faster than two that wait on each other (and on a busy CI machine much faster)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

@contextmanager
def case(**kw):
    "Name the case (a seed, a setting) in the message of any check that fails inside the block."
    where = ', '.join(f'{k}={v!r}' for k, v in kw.items())
    try: yield
    except AssertionError as e: e.args = (f"[{where}] {e}",); raise
    except pytest.fail.Exception as e: raise AssertionError(f"[{where}] {e}") from e   # e.g. `pytest.raises` unmet

# ---------------------------------------------------------------- tiny models and learners on fixed batches
# (test_training.py, test_lr_finder.py, test_transfer.py): a second per test, the same batches for fastai and our loops.
def tiny_model(seed:int=0):
    "Three groups: Linear+BatchNorm, Linear+LayerNorm, and a head with dropout, a Linear, a BatchNorm and a Linear."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Linear(32, 16), nn.LayerNorm(16), nn.ReLU(),
                         nn.Sequential(nn.Dropout(0.1), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, 4)))

def split3(m)->list:
    "The three parameter groups of `tiny_model` (or of any 7-module model split the same way)."
    return [params(m[:3]), params(m[3:6]), params(m[6:])]

def tiny_batches(seed:int, n:int=6, bs:int=16, noise:float=0.)->list:
    "`n` seeded batches `(x, y)` of 10 features and 4 classes (a linear rule, blurred by `noise` if given)."
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(10, 4, generator=g)
    out = []
    for _ in range(n):
        x = torch.randn(bs, 10, generator=g)
        logits = x @ w
        if noise: logits = logits + noise*torch.randn(bs, 4, generator=g)
        out.append((x, logits.argmax(1)))
    return out

def list_learner(model, train:list, valid:list, path, splitter=split3, **kwargs):
    "A fastai `Learner` with cross-entropy over fixed lists of batches (`training.ListDL`)."
    return Learner(DataLoaders(ListDL(train), ListDL(valid), path=path), model, loss_func=nn.CrossEntropyLoss(),
                   splitter=splitter, **kwargs)

def tiny_learner(train:list, valid:list, path, seed:int=0, **kwargs):
    "`list_learner` with `tiny_model(seed)` and its three groups."
    return list_learner(tiny_model(seed), train, valid, path, **kwargs)

@pytest.fixture(scope='session')
def project_copy(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp('proj'))

# Headless Chromium, as Debian packages it (`.ci/run` installs it when missing). Flags that work on this machine:
# no sandbox (root in a container), no GPU, and no background traffic (there is no internet).
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync']

def find_program(names, package:str)->str:
    "Path of the first of `names` on PATH; fails in CI (`.ci/run` installs Debian's `package`), skips elsewhere."
    for c in names:
        if shutil.which(c): return shutil.which(c)
    if os.environ.get('CI'): pytest.fail(f"CI must install Debian's {package}")
    pytest.skip(f"no {package} here (CI installs it)")

def chromium()->str:
    "Path of a Chromium binary, to test pages in a real browser."
    return find_program(('chromium', 'chromium-browser', 'google-chrome'), 'chromium')

def dump_dom(url:str, profile:Path, budget_ms:int=5000, timeout:int=120, extra=())->str:
    "The DOM of `url` after its load event (and `budget_ms` of virtual time), in a fresh profile at `profile`."
    r = subprocess.run([chromium(), *CHROMIUM_FLAGS, f'--user-data-dir={profile}', f'--virtual-time-budget={budget_ms}',
                        *extra, '--dump-dom', url], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"chromium failed on {url}: {r.stderr[-2000:]}"
    return r.stdout

def proc_nbs(project:Path)->Path:
    "Run `nbdev-proc-nbs` (the docs build's step before quarto) in `project`; return its `_proc` folder."
    r = subprocess.run([BIN/'nbdev-proc-nbs', '--n-workers', '1'], cwd=project, capture_output=True, text=True,
                       timeout=900, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return project/'_proc'

@pytest.fixture(scope='session')
def docs_proc(project_copy):
    "`_proc` of the session's project copy, processed once for every test that needs it."
    return proc_nbs(project_copy)
