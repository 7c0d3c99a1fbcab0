import shutil, subprocess, sys
from pathlib import Path
import pytest

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
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

class ListDL:
    "A fixed list of batches that fastai's `Learner` iterates like a `DataLoader`."
    def __init__(self, bs): self.bs = bs
    def __iter__(self): return iter(self.bs)
    def __len__(self): return len(self.bs)

@pytest.fixture(scope='session')
def project_copy(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp('proj'))
