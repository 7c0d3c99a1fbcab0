"""Build the two real-photo sets that `bench/real_photos.py` is run on, in ImageFolder layout, outside the repo.

Both come from public GitHub repositories, pinned to a commit; the split is deterministic (sorted names, a
seeded shuffle), so every machine builds the same folders:

  cats_dogs  Kaggle "Dogs vs. Cats" photos, as committed in chanakya2734/Image-classification-using-CNN
             (dataset/training_set and dataset/test_set): train 120 + 120, val 75 + 75 (both from
             training_set), test 100 + 100 (from test_set). Photos of varied size, up to 500 px.
  bears      black vs grizzly bears, a web-search scrape made for fastbook chapter 2, as committed in
             jeff-ridgeway/fastai-learning (bears/black, bears/grizzly): 62 % train / 38 % val per class.
             Photos of very varied size (270 to 7,500 px wide). Files of 4 MiB or more are left out (the
             offline snapshot this was built from lacks them, and the set must be the same everywhere).

    python bench/get_real_photos.py                      # download (needs git and internet), build both
    python bench/get_real_photos.py --mirror-root DIR    # read from local git dirs DIR/<owner>+<name>/repo
    python bench/get_real_photos.py --dest DIR           # default: ~/.cache/imgcls_course/real_sets

The ants/bees set of PyTorch's transfer-learning tutorial is deliberately not used here: the project keeps it
for an independent check of the recipe chosen on these two sets.
"""
import argparse, random, re, shutil, subprocess, sys, tempfile
from pathlib import Path

MAX_BYTES = 4*1024*1024
SETS = {
    'cats_dogs': dict(repo='chanakya2734/Image-classification-using-CNN',
                      commit='bf746c6e53f1edacd97b383de350f7a495cef0e1',
                      classes={'cat': ('dataset/training_set/cats', 'dataset/test_set/cats'),
                               'dog': ('dataset/training_set/dogs', 'dataset/test_set/dogs')},
                      counts=dict(train=120, val=75, test=100)),
    'bears': dict(repo='jeff-ridgeway/fastai-learning', commit='9307a855bd4dc0239f8e2ae9935f30ad17605dc1',
                  classes={'black': ('bears/black', None), 'grizzly': ('bears/grizzly', None)},
                  train_frac=0.62),
}
IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp')

def _git(*args, **kw): return subprocess.run(['git', *args], check=True, capture_output=True, **kw)

class MirrorSource:
    "Files of a commit read from a local bare git dir (blobs missing from the snapshot are skipped)."
    def __init__(self, gitdir, commit): self.g, self.c = str(gitdir), commit
    def files(self, folder):
        out = _git(f'--git-dir={self.g}', 'ls-tree', '-l', self.c, folder.rstrip('/')+'/', text=True).stdout
        res = []
        for line in out.splitlines():
            meta, path = line.split('\t', 1)
            _, kind, sha, size = meta.split()
            if kind == 'blob' and size.isdigit() and int(size) < MAX_BYTES: res.append((path, sha))
        return sorted(res)
    def read(self, f):
        r = subprocess.run(['git', f'--git-dir={self.g}', 'cat-file', 'blob', f[1]], capture_output=True)
        return r.stdout if r.returncode == 0 else None

class CloneSource:
    "Files of a commit from a shallow, blobless, sparse clone of the GitHub repository (needs internet)."
    def __init__(self, repo, commit, folders, workdir):
        self.w = Path(workdir)/repo.replace('/', '+')
        if not (self.w/'.git').exists():
            self.w.mkdir(parents=True, exist_ok=True)
            _git('init', '-q', str(self.w))
            _git('-C', str(self.w), 'remote', 'add', 'origin', f'https://github.com/{repo}.git')
            _git('-C', str(self.w), 'fetch', '-q', '--depth', '1', '--filter=blob:none', 'origin', commit)
            _git('-C', str(self.w), 'sparse-checkout', 'set', '--no-cone', *[f'/{f}/' for f in folders])
            _git('-C', str(self.w), 'checkout', '-q', 'FETCH_HEAD')
    def files(self, folder):
        d = self.w/folder
        return sorted((str(p.relative_to(self.w)), p) for p in d.iterdir()
                      if p.is_file() and p.stat().st_size < MAX_BYTES)
    def read(self, f): return f[1].read_bytes()

def _images(src, folder):
    return [f for f in src.files(folder) if Path(f[0]).suffix.lower() in IMG_EXTS or '.jpg' in f[0].lower()]

def _safe_name(path):
    "File name without URL residue (`x.jpg;w=960` -> `x.jpg_w_960.jpg`), still ending in an image extension."
    name = re.sub(r'[^\w.-]', '_', Path(path).name)
    return name if name.lower().endswith(IMG_EXTS) else name + '.jpg'

def _write(src, f, dest:Path):
    data = src.read(f)
    if data is None: return False
    dest.parent.mkdir(parents=True, exist_ok=True); dest.write_bytes(data); return True

def build(name, src, dest:Path, seed=0):
    "Write `dest/name/{train,val[,test]}/<class>/...`; returns `{split: {class: count}}`."
    spec, out = SETS[name], dest/name
    if out.exists(): shutil.rmtree(out)
    counts = {}
    for cls, (main, test) in spec['classes'].items():
        files = _images(src, main)
        random.Random(f'{seed}-{name}-{cls}').shuffle(files)
        if 'counts' in spec:
            n_tr, n_va = spec['counts']['train'], spec['counts']['val']
            parts = dict(train=files[:n_tr], val=files[n_tr:n_tr+n_va])
            tf = _images(src, test); random.Random(f'{seed}-{name}-{cls}-test').shuffle(tf)
            parts['test'] = tf[:spec['counts']['test']]
        else:
            n_tr = round(spec['train_frac']*len(files))
            parts = dict(train=files[:n_tr], val=files[n_tr:])
        for split, fs in parts.items():
            ok = sum(_write(src, f, out/split/cls/_safe_name(f[0])) for f in fs)
            counts.setdefault(split, {})[cls] = ok
    return counts

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dest', default=str(Path.home()/'.cache'/'imgcls_course'/'real_sets'))
    p.add_argument('--mirror-root', default=None, help='folder of local bare git dirs named <owner>+<name>/repo')
    p.add_argument('--only', choices=list(SETS), default=None)
    a = p.parse_args(argv)
    dest = Path(a.dest).expanduser()
    with tempfile.TemporaryDirectory() as work:
        for name, spec in SETS.items():
            if a.only and name != a.only: continue
            if a.mirror_root:
                src = MirrorSource(Path(a.mirror_root)/spec['repo'].replace('/', '+')/'repo', spec['commit'])
            else:
                folders = [f for pair in spec['classes'].values() for f in pair if f]
                src = CloneSource(spec['repo'], spec['commit'], folders, work)
            counts = build(name, src, dest)
            print(f"{dest/name}: " + '; '.join(f"{s} " + ' + '.join(f'{n} {c}' for c, n in cs.items())
                                                for s, cs in counts.items()))
    return 0

if __name__ == '__main__': sys.exit(main())
