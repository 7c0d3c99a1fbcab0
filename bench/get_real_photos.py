"""Build the real-photo sets that `bench/real_photos.py` is run on, in ImageFolder layout, outside the repo.

All come from public GitHub repositories, pinned to a commit; the split is deterministic (sorted names, a
seeded shuffle), so every machine builds the same folders (`--list` prints what each set is):

  cats_dogs  Kaggle "Dogs vs. Cats" photos, as committed in chanakya2734/Image-classification-using-CNN
             (dataset/training_set and dataset/test_set): train 120 + 120, val 75 + 75 (both from
             training_set), test 100 + 100 (from test_set). Photos of varied size, up to 500 px.
  bears      black vs grizzly bears, a web-search scrape made for fastbook chapter 2, as committed in
             jeff-ridgeway/fastai-learning (bears/black, bears/grizzly): 62 % train / 38 % val per class, no test/.
             Photos of very varied size (270 to 7,500 px wide). Files of 4 MiB or more are left out (the
             offline snapshot this was built from lacks them, and the set must be the same everywhere).

Two harder sets, each with a held-out test/ drawn only from the source's own test or validation folder, never
to be used to choose anything; train/ and val/ come from the source's training folder:

  food10     ten Food-101 dishes (Bossard, Guillaumin and Van Gool, ECCV 2014), as committed in srohit0/food_mnist
             at e6cdf589a9937cf7fcb53d3a86df053be452e1f5 (images/<dish>/<id>.jpg, 500 a dish, at most 512 px):
             apple_pie, baby_back_ribs, baklava, beef_carpaccio, beef_tartare, beet_salad, beignets, bibimbap,
             bread_pudding, breakfast_burrito. Train 50, val 15 per dish from Food-101's train list
             (meta/train.txt: not cleaned, some wrong labels, as in Food-101), test 25 per dish from its
             manually reviewed test list (meta/test.txt): 500 / 150 / 250. Licence: Food-101's
             license_agreement.txt (in the repo): the images are Foodspotting users', for scientific fair use.
  monkeys10  the Kaggle "10 Monkey Species" photos, as committed in nikhildutta333/Monkey-Species-Classification
             at cb62130b182246b59ed74614734320e61eb6aacc (training/n0..n9, validation/n0..n9, all 250 x 250
             px; monkey_labels.txt names the species): mantled_howler, patas_monkey, bald_uakari,
             japanese_macaque, pygmy_marmoset, white_headed_capuchin, silvery_marmoset, common_squirrel_monkey,
             black_headed_night_monkey, nilgiri_langur. Train 40, val 15 per species from training/, test 25 per
             species from validation/: 400 / 150 / 250. Licence: none stated in the repo.

Four more, added after the tool's recipe and time budget were fixed, to check them on sets that chose nothing
(each with a held-out test/, from the source's test part where it has one; the classes are the sources' own, or
a seeded draw, never picked by hand):

  ants_bees  the ants and bees of PyTorch's transfer-learning tutorial (ImageNet photos), as committed in
             zhangtao7750/syn at f0503091488f67b6809a6da2eaa43c25f2f277fc (hymenoptera_data/{train,val}/{ants,bees}):
             train 80, val 30 a class from train/, test 70 a class from val/: 160 / 60 / 140.
  birds20    20 species of a 100-species CUB-200-2011 subset (Wah et al., Caltech 2011; 227 x 227 px), as committed
             in serizba/vision at 16a8a47ea88abb31d9b61b81dbbe09347bf72385 (ex03/task2/bird_dataset: images/<species>/,
             and CUB's images.txt + train_test_split.txt): the species are a seeded draw (`BIRDS20`). Train 20, val 8 a
             species from CUB's training images, test 25 from its test images: 400 / 160 / 500.
  flowers12  12 of the Oxford 17 Flowers classes (Nilsback and Zisserman, 2006; 224 x 224 px), as committed in
             daniele-gilio/Machine-Learning-Class at 35496a1435a27a0818a486fbe6472e7b4325f983
             (lab3/flowers/{train,test}; its train_augmented/ is not used): train 45, val 15 a class from train/,
             test 20 from test/: 540 / 179 / 240 (one iris pair is byte-identical).
  butterflies10  the Leeds Butterfly Dataset's ten species (Wang, Markert and Everingham, BMVC 2009; PNG, 500 px
             wide), as committed in dsw88/cs601r-project1-dataset at b01a8ebbd54c247e99699d3ff2576a63ff414549
             (dataset/butterflies/images/0NNxxxx.png, NN the species): no test part in the source, so test/ (15 a
             species) is drawn from the seeded shuffle first, then train 30 and val 10: 300 / 100 / 150.

Two more, added in the same way after those four had been measured (the recipe unchanged):

  textures10  the ten classes of the Describable Textures Dataset (Cimpoi et al., CVPR 2014) committed in
             pan8915/DeepTexture at 522f46f683af11e93673bff29f81df14f49edfb2 (images/<class>/, 120 a class, 300 to
             640 px): no test part, so test/ (30 a class) is drawn first, then train 60 and val 20: 600 / 200 / 300.
  trash6     TrashNet's six classes (Yang and Thung, 2016) as committed in congduytran12/Trash-Classification- at
             00212f2c18dcdb9045c74481eaae5baaf72537df (dataset-resized/<class>/, 137 to 594 a class, every photo
             resized there to 384 x 512 px, so many are squashed): test/ (30 a class) drawn first, then train 60 and
             val 20: 360 / 120 / 180. Three photos filed under two classes are left out (the rule below).

In these pooled sets, byte-identical files (the monkey snapshot holds 67 such pairs) and files of one class whose
names differ only by a copy marker (`x.jpg`, `x (1).jpg`, `x_1.jpg`) form a group that is kept whole on one side:
a group with a member in the source's test folder (or list) can only go to test/, one of a single class is
written once per distinct file, and a group spanning two classes is left out. Files PIL cannot open are left out.
tests/test_real_sets.py checks these rules on a small fake source.

The real Oxford-IIIT Pets copy that `bench/get_real_pets.py` builds is not made a split set here: 34 of its 37
breeds have 8-10 images, so a stratified test/ would hold 2-3 images a breed (one image is 3-4 % of a breed's
accuracy there); it stays the `--regex` check it is.

    python bench/get_real_photos.py                      # download (needs git and internet), build all ten
    python bench/get_real_photos.py --mirror-root DIR    # read from local git dirs DIR/<owner>+<name>/repo
    python bench/get_real_photos.py --dest DIR           # default: ~/.cache/imgcls_course/real_sets
    python bench/get_real_photos.py --only food10        # one set
    python bench/get_real_photos.py --list               # what each set is, and the counts of those built

"""
import argparse, hashlib, io, random, re, shutil, subprocess, sys, tempfile
from pathlib import Path

MAX_BYTES = 4*1024*1024
# 20 of the subset's 100 species, `sorted(random.Random(0).sample(E, 20))` where E is the sorted list of the 90
# species with at least 28 training images (is_train 1), drawn before anything was measured on them
BIRDS20 = ('Bay_breasted_Warbler', 'Blue_headed_Vireo', 'Brown_Pelican', 'Downy_Woodpecker', 'Gadwall', 'Geococcyx',
           'Gray_Catbird', 'Green_Kingfisher', 'Horned_Grebe', 'Ivory_Gull', 'Le_Conte_Sparrow', 'Magnolia_Warbler',
           'Pied_billed_Grebe', 'Pigeon_Guillemot', 'Pine_Grosbeak', 'Prairie_Warbler', 'Red_breasted_Merganser',
           'Ruby_throated_Hummingbird', 'Scissor_tailed_Flycatcher', 'Summer_Tanager')
# the Leeds set's ten species, in the order of its file-name prefixes 001..010 (descriptions/0NN.txt)
BUTTERFLIES10 = ('monarch', 'zebra_longwing', 'crimson_patched_longwing', 'common_buckeye', 'american_copper',
                 'mourning_cloak', 'giant_swallowtail', 'cabbage_white', 'red_admiral', 'painted_lady')
SETS = {
    'cats_dogs': dict(repo='chanakya2734/Image-classification-using-CNN',
                      commit='bf746c6e53f1edacd97b383de350f7a495cef0e1',
                      classes={'cat': ('dataset/training_set/cats', 'dataset/test_set/cats'),
                               'dog': ('dataset/training_set/dogs', 'dataset/test_set/dogs')},
                      counts=dict(train=120, val=75, test=100)),
    'bears': dict(repo='jeff-ridgeway/fastai-learning', commit='9307a855bd4dc0239f8e2ae9935f30ad17605dc1',
                  classes={'black': ('bears/black', None), 'grizzly': ('bears/grizzly', None)},
                  train_frac=0.62),
    'food10': dict(repo='srohit0/food_mnist', commit='e6cdf589a9937cf7fcb53d3a86df053be452e1f5',
                   classes={c: (f'images/{c}', None) for c in (
                       'apple_pie', 'baby_back_ribs', 'baklava', 'beef_carpaccio', 'beef_tartare', 'beet_salad',
                       'beignets', 'bibimbap', 'bread_pudding', 'breakfast_burrito')},
                   test_list='meta/test.txt', counts=dict(train=50, val=15, test=25), pooled=True,
                   licence="Food-101's license_agreement.txt: Foodspotting users' images, scientific fair use"),
    'monkeys10': dict(repo='nikhildutta333/Monkey-Species-Classification',
                      commit='cb62130b182246b59ed74614734320e61eb6aacc',
                      classes={c: (f'training/n{i}', f'validation/n{i}') for i, c in enumerate((
                          'mantled_howler', 'patas_monkey', 'bald_uakari', 'japanese_macaque', 'pygmy_marmoset',
                          'white_headed_capuchin', 'silvery_marmoset', 'common_squirrel_monkey',
                          'black_headed_night_monkey', 'nilgiri_langur'))},
                      counts=dict(train=40, val=15, test=25), pooled=True, licence='none stated in the repo'),
    'ants_bees': dict(repo='zhangtao7750/syn', commit='f0503091488f67b6809a6da2eaa43c25f2f277fc',
                      classes={c: (f'hymenoptera_data/train/{c}', f'hymenoptera_data/val/{c}')
                               for c in ('ants', 'bees')},
                      counts=dict(train=80, val=30, test=70), pooled=True,
                      licence="none stated in the repo (PyTorch's transfer-learning tutorial data, from ImageNet)"),
    'birds20': dict(repo='serizba/vision', commit='16a8a47ea88abb31d9b61b81dbbe09347bf72385',
                    classes={c: (f'ex03/task2/bird_dataset/images/{c}', None) for c in BIRDS20},
                    cub_split='ex03/task2/bird_dataset', counts=dict(train=20, val=8, test=25), pooled=True,
                    licence='CUB-200-2011 terms (the README of the subset: "the same terms and conditions apply")'),
    'flowers12': dict(repo='daniele-gilio/Machine-Learning-Class', commit='35496a1435a27a0818a486fbe6472e7b4325f983',
                      classes={c: (f'lab3/flowers/train/{c}', f'lab3/flowers/test/{c}') for c in (
                          'bluebell', 'buttercup', 'colts-foot', 'daisy', 'dandelion', 'fritillary', 'iris',
                          'lily-valley', 'pansy', 'sunflower', 'tigerlily', 'windflower')},
                      counts=dict(train=45, val=15, test=20), pooled=True, licence='none stated in the repo'),
    'butterflies10': dict(repo='dsw88/cs601r-project1-dataset', commit='b01a8ebbd54c247e99699d3ff2576a63ff414549',
                          classes={c: ('dataset/butterflies/images', None) for c in BUTTERFLIES10},
                          name_re={c: f'/0{i:02d}\\d+\\.png$' for i, c in enumerate(BUTTERFLIES10, 1)},
                          counts=dict(train=30, val=10, test=15), pooled=True, test_from_train=True,
                          licence="Leeds Butterfly Dataset v1.0 (Wang, Markert and Everingham, BMVC 2009): the repo's "
                                  "README says for learning use only"),
    'textures10': dict(repo='pan8915/DeepTexture', commit='522f46f683af11e93673bff29f81df14f49edfb2',
                       classes={c: (f'images/{c}', None) for c in (
                           'banded', 'blotchy', 'braided', 'bubbly', 'bumpy', 'chequered', 'cobwebbed', 'cracked',
                           'crosshatched', 'crystalline')},
                       counts=dict(train=60, val=20, test=30), pooled=True, test_from_train=True,
                       licence="none stated in the repo (DTD, Cimpoi et al., CVPR 2014: for research purposes)"),
    'trash6': dict(repo='congduytran12/Trash-Classification-', commit='00212f2c18dcdb9045c74481eaae5baaf72537df',
                   classes={c: (f'dataset-resized/{c}', None) for c in (
                       'cardboard', 'glass', 'metal', 'paper', 'plastic', 'trash')},
                   counts=dict(train=60, val=20, test=30), pooled=True, test_from_train=True,
                   licence='none stated in the repo (TrashNet, Yang and Thung, 2016)'),
}
LICENCES = {'cats_dogs': 'none stated in the repo (Kaggle "Dogs vs. Cats": Asirra, Petfinder photos)',
            'bears': 'none stated in the repo (web-search scrape)'}
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
    def key(self, f): return f[1]   # the blob id: equal for byte-identical files
    def read_path(self, path): return _git(f'--git-dir={self.g}', 'cat-file', 'blob', f'{self.c}:{path}').stdout

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
    def key(self, f):
        "The git blob id of the file, as `MirrorSource.key` gives it."
        data = f[1].read_bytes()
        return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()
    def read_path(self, path): return (self.w/path).read_bytes()

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

def _stem(path):
    "A file's name without extension and copy markers (`x (1).jpg`, `x_1.jpg`, `x-copy.jpg` -> `x`), lower case."
    return re.sub(r'(\s*\(\d+\)|[_-]\d|[_ -]copy)$', '', Path(path).stem.lower())

def _opens(data):
    "Whether PIL can read the image."
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im: im.load()
        return True
    except Exception: return False

def _groups(src, spec):
    "`{class: [(in_test_pool, [file, ...]), ...]}`: files joined by identical bytes or by stem within a class."
    listed = None
    if spec.get('test_list'):
        listed = set(src.read_path(spec['test_list']).decode().split())
    if spec.get('cub_split'):   # CUB's files: `id, class/name.jpg` and `id, is_train`
        read = lambda f: dict(l.split(', ') for l in src.read_path(f"{spec['cub_split']}/{f}").decode().splitlines())
        paths, is_train = read('images.txt'), read('train_test_split.txt')
        listed = {paths[i].rsplit('.', 1)[0] for i, t in is_train.items() if t.strip() == '0'}
    files = []   # (class, file, in test pool)
    for cls, (main, test) in spec['classes'].items():
        keep = re.compile(spec['name_re'][cls]) if 'name_re' in spec else None
        files += [(cls, f, listed is not None and f'{cls}/{Path(f[0]).stem}' in listed) for f in _images(src, main)
                  if keep is None or keep.search(f[0])]
        if test: files += [(cls, f, True) for f in _images(src, test)]
    parent = list(range(len(files)))
    def find(i):
        while parent[i] != i: parent[i] = parent[parent[i]]; i = parent[i]
        return i
    first = {}
    for i, (cls, f, _) in enumerate(files):
        for k in (('bytes', src.key(f)), ('stem', cls, _stem(f[0]))):
            if k in first: parent[find(i)] = find(first[k])
            else: first[k] = i
    groups = {}
    for i in range(len(files)): groups.setdefault(find(i), []).append(i)
    out = {cls: [] for cls in spec['classes']}
    for members in groups.values():
        if len({files[i][0] for i in members}) > 1: continue   # the same photo under two classes
        seen, keep = set(), []
        for i in sorted(members, key=lambda i: files[i][1][0]):
            if (k := src.key(files[i][1])) not in seen: seen.add(k); keep.append(files[i][1])
        out[files[members[0]][0]].append((any(files[i][2] for i in members), keep))
    for gs in out.values(): gs.sort(key=lambda g: g[1][0][0])
    return out

def build_pooled(name, src, out:Path, seed=0):
    "Stratified, seeded split of whole groups (`_groups`): test/ from the test pool, train/ and val/ from the rest."
    spec, counts = SETS[name], {}
    for cls, gs in _groups(src, spec).items():
        rng = random.Random(f'{seed}-{name}-{cls}')
        pools = {'test': [g for t, g in gs if t], 'train': [g for t, g in gs if not t]}
        for pool in pools.values(): rng.shuffle(pool)
        if spec.get('test_from_train'): pools['test'] = pools['train']   # no test part in the source: draw it first
        order = ('test', 'train', 'val') if spec.get('test_from_train') else ('train', 'val', 'test')
        for split, pool in ((k, pools[k if k != 'val' else 'train']) for k in order):
            n = 0
            while n < spec['counts'][split] and pool:
                for f in pool.pop(0):
                    data = src.read(f)
                    if data is None or not _opens(data): continue
                    d = out/split/cls/_safe_name(f[0]); d.parent.mkdir(parents=True, exist_ok=True)
                    d.write_bytes(data); n += 1
            counts.setdefault(split, {})[cls] = n
    return counts

def build(name, src, dest:Path, seed=0):
    "Write `dest/name/{train,val[,test]}/<class>/...`; returns `{split: {class: count}}`."
    spec, final = SETS[name], dest/name
    out = dest/f'.{name}.building'   # built aside, then swapped in: a failed build leaves the old set as it was
    if out.exists(): shutil.rmtree(out)
    counts = build_pooled(name, src, out, seed) if spec.get('pooled') else _build_split(name, spec, src, out, seed)
    if final.exists(): shutil.rmtree(final)
    out.rename(final)
    return counts

def _build_split(name, spec, src, out:Path, seed=0):
    "`build` for the sets split by class folders (not pooled)."
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

def describe(name, dest:Path)->str:
    "Source, commit, licence, classes and split counts (planned, and as built under `dest` if it is there)."
    spec, out = SETS[name], dest/name
    plan = (', '.join(f"{k} {n}" for k, n in spec['counts'].items()) + ' a class' if 'counts' in spec
            else f"{spec['train_frac']:.0%} train, the rest val")
    lines = [f"{name}: github.com/{spec['repo']} @ {spec['commit']}",
             f"  licence: {spec.get('licence') or LICENCES.get(name, 'not stated')}",
             f"  classes ({len(spec['classes'])}): {', '.join(spec['classes'])}", f"  planned: {plan}"]
    if out.is_dir():
        for split in ('train', 'val', 'test'):
            if not (out/split).is_dir(): continue
            n = {c.name: sum(1 for f in c.iterdir() if f.is_file())
                 for c in sorted((out/split).iterdir()) if c.is_dir()}
            lines.append(f"  built {split}: {sum(n.values())} ({min(n.values())}-{max(n.values())} a class)")
    else: lines.append(f"  not built under {dest}")
    return '\n'.join(lines)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dest', default=str(Path.home()/'.cache'/'imgcls_course'/'real_sets'))
    p.add_argument('--mirror-root', default=None, help='folder of local bare git dirs named <owner>+<name>/repo')
    p.add_argument('--only', choices=list(SETS), default=None)
    p.add_argument('--list', action='store_true',
                   help='say what each set is (and its counts, where built); build nothing')
    a = p.parse_args(argv)
    dest = Path(a.dest).expanduser()
    if a.list:
        for name, spec in SETS.items():
            if not a.only or name == a.only: print(describe(name, dest))
        return 0
    with tempfile.TemporaryDirectory() as work:
        for name, spec in SETS.items():
            if a.only and name != a.only: continue
            if a.mirror_root:
                gitdir = Path(a.mirror_root)/spec['repo'].replace('/', '+')/'repo'
                if (gitdir/'.git').is_dir(): gitdir = gitdir/'.git'   # a snapshot with a work tree
                src = MirrorSource(gitdir, spec['commit'])
            else:
                folders = [f for pair in spec['classes'].values() for f in pair if f]
                if spec.get('test_list'): folders.append(str(Path(spec['test_list']).parent))
                src = CloneSource(spec['repo'], spec['commit'], folders, work)
            try: counts = build(name, src, dest)
            except subprocess.CalledProcessError as e:   # no such repository, commit or folder: one line, no traceback
                err = e.stderr.decode(errors='replace') if isinstance(e.stderr, bytes) else e.stderr or ''
                why = err.strip().splitlines()
                print(f"get_real_photos: error: {name}: git {e.cmd[2]} failed "
                      f"({why[-1] if why else e.returncode}); is {spec['repo']} at {spec['commit'][:10]} there?",
                      file=sys.stderr)
                return 2
            print(f"{dest/name}: " + '; '.join(f"{s} " + ' + '.join(f'{n} {c}' for c, n in cs.items())
                                                for s, cs in counts.items()))
    return 0

if __name__ == '__main__': sys.exit(main())
