"`bench/get_real_photos.py`: the held-out test/ of each real-photo set never shares a photo with train/ or val/."
import hashlib, importlib.util, io, tempfile
from pathlib import Path
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def grp():
    spec = importlib.util.spec_from_file_location('bench_get_real_photos', ROOT/'bench'/'get_real_photos.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m

def _jpeg(i:int)->bytes:
    "A tiny image (PNG inside, which PIL reads whatever the name says) whose bytes differ for every `i`."
    b = io.BytesIO(); Image.new('RGB', (8, 8), (i % 256, i // 256, 7)).save(b, 'PNG'); return b.getvalue()

class FakeSource:
    "`MirrorSource`'s interface over a dict `{path: bytes}` (bytes, or text for the list files)."
    def __init__(self, files:dict): self.d = files
    def files(self, folder):
        return sorted((p, p) for p in self.d if p.rsplit('/', 1)[0] == folder.rstrip('/'))
    def read(self, f): return self.d[f[0]]
    def key(self, f): return hashlib.sha1(self.d[f[0]]).hexdigest()
    def read_path(self, path): return self.d[path]

def _built(out:Path)->dict:
    "`{split: {class: set of file bytes' hashes}}` of a built set."
    return {s.name: {c.name: {hashlib.sha1(f.read_bytes()).hexdigest() for f in c.iterdir()} for c in s.iterdir()}
            for s in out.iterdir()}

def _disjoint(b:dict):
    "No photo (by its bytes) in two splits or two classes."
    seen = {}
    for s, cs in b.items():
        for c, hs in cs.items():
            for h in hs:
                assert h not in seen, f"the same photo in {seen[h]} and {(s, c)}"
                seen[h] = (s, c)

def test_source_test_folder_only_feeds_test(grp, monkeypatch):
    d = {f'tr/{c}/{c}{i}.jpg': _jpeg(100*k + i) for k, c in enumerate('ab') for i in range(12)}
    d |= {f'te/{c}/{c}t{i}.jpg': _jpeg(1000 + 100*k + i) for k, c in enumerate('ab') for i in range(5)}
    d['te/a/dup_of_train.jpg'] = d['tr/a/a0.jpg']      # the same bytes in train and test folders: test only
    d['tr/b/b_copy_of_a.jpg'] = d['tr/a/a1.jpg']       # one photo under two classes: left out
    spec = dict(classes={c: (f'tr/{c}', f'te/{c}') for c in 'ab'}, counts=dict(train=6, val=3, test=4), pooled=True)
    monkeypatch.setitem(grp.SETS, 'fake', spec)
    with tempfile.TemporaryDirectory() as t:
        counts = grp.build('fake', FakeSource(d), Path(t))
        b = _built(Path(t)/'fake')
    assert counts == {'train': {'a': 6, 'b': 6}, 'val': {'a': 3, 'b': 3}, 'test': {'a': 4, 'b': 4}}, counts
    _disjoint(b)
    test_pool = {hashlib.sha1(v).hexdigest() for k, v in d.items() if k.startswith('te/')}
    for s in ('train', 'val'):
        assert not set().union(*b[s].values()) & test_pool, s
    assert set().union(*b['test'].values()) <= test_pool
    assert hashlib.sha1(d['tr/a/a1.jpg']).hexdigest() not in set().union(*[h for cs in b.values() for h in cs.values()])

def test_cub_split_and_a_set_without_a_test_part(grp, monkeypatch):
    "CUB's `is_train` lists choose the test pool; a source with no test part has test/ drawn from its pool first."
    d = {f'img/{c}/{i:04d}.jpg': _jpeg(100*k + i) for k, c in enumerate(('Gull', 'Wren')) for i in range(10)}
    paths = sorted(p.removeprefix('img/') for p in d)
    d['cub/images.txt'] = '\n'.join(f'{i}, {p}' for i, p in enumerate(paths)).encode()
    d['cub/train_test_split.txt'] = '\n'.join(f'{i}, {int(int(p[-8:-4]) < 6)}' for i, p in enumerate(paths)).encode()
    monkeypatch.setitem(grp.SETS, 'cub', dict(classes={c: (f'img/{c}', None) for c in ('Gull', 'Wren')},
                                              cub_split='cub', counts=dict(train=4, val=2, test=3), pooled=True))
    flat = {f'all/0{k:02d}{i:04d}.png': _jpeg(5000 + 100*k + i) for k in (1, 2) for i in range(9)}
    monkeypatch.setitem(grp.SETS, 'leeds', dict(
        classes={c: ('all', None) for c in ('x', 'y')}, name_re={'x': r'/001\d+\.png$', 'y': r'/002\d+\.png$'},
        counts=dict(train=4, val=2, test=3), pooled=True, test_from_train=True))
    with tempfile.TemporaryDirectory() as t:
        grp.build('cub', FakeSource(d), Path(t)); cub = _built(Path(t)/'cub')
        counts = grp.build('leeds', FakeSource(flat), Path(t)); leeds = _built(Path(t)/'leeds')
        again = grp.build('leeds', FakeSource(flat), Path(t)); same = _built(Path(t)/'leeds')
    _disjoint(cub); _disjoint(leeds)
    is_test = {hashlib.sha1(v).hexdigest() for k, v in d.items() if k.endswith('.jpg') and int(k[-8:-4]) >= 6}
    assert set().union(*cub['test'].values()) <= is_test
    assert not set().union(*cub['train'].values(), *cub['val'].values()) & is_test
    assert counts == again == {'test': {'x': 3, 'y': 3}, 'train': {'x': 4, 'y': 4}, 'val': {'x': 2, 'y': 2}}, counts
    assert leeds == same   # seeded: the same split every time
    for c, pre in (('x', 1), ('y', 2)):   # each class only its own prefix's files
        mine = {hashlib.sha1(v).hexdigest() for k, v in flat.items() if k.startswith(f'all/0{pre:02d}')}
        assert set().union(*(leeds[s][c] for s in leeds)) <= mine
