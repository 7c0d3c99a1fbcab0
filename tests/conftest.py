import os, shutil, subprocess, sys
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

@pytest.fixture(scope='session')
def project_copy(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp('proj'))
