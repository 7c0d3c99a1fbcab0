"""Build an offline copy of the real Oxford-IIIT Pets where fastai's `untar_data(URLs.PETS)` looks for it.

The Oxford-IIIT Pet Dataset (Parkhi, Vedaldi, Zisserman and Jawahar, "Cats and Dogs", CVPR 2012; CC BY-SA 4.0,
https://www.robots.ox.ac.uk/~vgg/data/pets/) is a 800 MB download. Two public GitHub repositories hold real
files of it under their original names, pinned here to a commit:

  LTSACH/AILearningHub                 datasets/oxford-pets/data/sample_images/{cats,dogs}: 37 breeds x 10 images
  Naveen-Dodda/Sample_Pets_dataset     images/: Abyssinian, Bengal, american_bulldog, 200 each, with the original
                                       set's odd files (Abyssinian_34.jpg is a GIF, Abyssinian_5.jpg a PNG, and
                                       Abyssinian_100/101/102.mat); annotations/ (trimaps, head boxes, lists)

Together: 940 images of the 37 breeds (the 30 files both hold are byte-identical), in the layout the real archive
extracts to, `<fastai data dir>/oxford-iiit-pet/{images,annotations}/`. `untar_data` returns an extracted folder
that exists without looking for the archive, so `imgcls_course.data.oxford_pets_path()` then returns this copy
with no download. (Move it away, or remove it, before downloading the full set.)

    python bench/get_real_pets.py                      # clone both (needs git and internet), build the copy
    python bench/get_real_pets.py --mirror-root DIR    # read local git dirs DIR/<owner>+<name>/repo instead
    python bench/get_real_pets.py --ltsach GITDIR --naveen GITDIR    # or name each (bare) git dir
    python bench/get_real_pets.py --dest DIR           # default: fastai's data dir (`fastai_path('data')`, which
                                                       # follows $FASTAI_HOME and ~/.fastai/config.ini)/oxford-iiit-pet
    python bench/get_real_pets.py --fixture DIR        # write the small test fixture instead (tests/fixtures/real_pets)

The fixture (`FIXTURE`) takes 2-4 small images of each of 4 cat and 4 dog breeds, the GIF and the PNG named .jpg
and the smallest .mat file. The snapshots have no grayscale or CMYK JPEG (the full set has both), so the fixture
re-saves one real image as each (`STAND_INS`); its README says which.
"""
import argparse, io, shutil, subprocess, sys, tempfile
from pathlib import Path
from get_real_photos import MirrorSource, CloneSource

SOURCES = {
    'ltsach': dict(repo='LTSACH/AILearningHub', commit='38c4dfa48f34344f2e73eebbb93974928943a8c8',
                   folders=('datasets/oxford-pets/data/sample_images/cats',
                            'datasets/oxford-pets/data/sample_images/dogs'), annotations=None),
    'naveen': dict(repo='Naveen-Dodda/Sample_Pets_dataset', commit='9281626a62066c09f278b9b41ac4bad3683d7541',
                   folders=('images',), annotations='annotations'),
}
FIXTURE = ['Abyssinian_192.jpg', 'Abyssinian_159.jpg', 'Abyssinian_56.jpg', 'Abyssinian_34.jpg', 'Abyssinian_5.jpg',
           'Abyssinian_101.mat', 'Bengal_153.jpg', 'Bengal_150.jpg', 'Bengal_135.jpg',
           'Bombay_121.jpg', 'Bombay_160.jpg', 'Bombay_153.jpg',
           'Egyptian_Mau_152.jpg', 'Egyptian_Mau_136.jpg', 'Egyptian_Mau_164.jpg',
           'american_bulldog_175.jpg', 'american_bulldog_150.jpg', 'american_bulldog_174.jpg',
           'american_pit_bull_terrier_156.jpg', 'american_pit_bull_terrier_169.jpg',
           'american_pit_bull_terrier_158.jpg',
           'chihuahua_122.jpg', 'chihuahua_109.jpg', 'chihuahua_131.jpg', 'pug_166.jpg', 'pug_142.jpg', 'pug_140.jpg']
STAND_INS = {'Bombay_123.jpg': 'L', 'pug_139.jpg': 'CMYK'}   # real images re-saved as grayscale / CMYK JPEG

def _files(src, folder):
    "`{name: file}` of the blobs directly or deeply under `folder`."
    return {Path(f[0]).name: f for f in src.files(folder)}

def _sources(a, work):
    "A reader for each snapshot: named git dirs, a mirror root, or fresh sparse clones."
    out = {}
    for k, spec in SOURCES.items():
        gitdir = getattr(a, k) or (a.mirror_root and Path(a.mirror_root)/spec['repo'].replace('/', '+')/'repo')
        if gitdir: out[k] = MirrorSource(Path(gitdir).expanduser(), spec['commit'])
        else:
            folders = [*spec['folders'], *([spec['annotations']] if spec['annotations'] else [])]
            out[k] = CloneSource(spec['repo'], spec['commit'], folders, work)
    return out

def _recurse(src):
    "Make `src.files(folder)` list a folder's whole tree (a `MirrorSource` lists one level)."
    if isinstance(src, MirrorSource):
        def files(folder):
            out = subprocess.run(['git', f'--git-dir={src.g}', 'ls-tree', '-r', '-l', src.c, folder.rstrip('/')+'/'],
                                 capture_output=True, text=True, check=True).stdout
            return sorted((l.split('\t', 1)[1], l.split()[2]) for l in out.splitlines() if l.split()[1] == 'blob')
        src.files = files
    else:
        def files(folder, w=src.w):
            return sorted((str(p.relative_to(w)), p) for p in (w/folder).rglob('*') if p.is_file())
        src.files = files
    return src

def images(srcs)->dict:
    "`{file name: (source, file)}` of every file in the snapshots' image folders (the second snapshot wins)."
    return {n: (src, f) for k, src in srcs.items() for folder in SOURCES[k]['folders']
            for n, f in _files(src, folder).items()}

def build(srcs, dest:Path)->dict:
    "Write `dest/images/*` and `dest/annotations/...` into a temporary folder, then rename it to `dest`."
    if dest.exists(): raise SystemExit(f"{dest} exists already (the full download?); move it away first")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='.tmp-oxford-iiit-pet-', dir=dest.parent))
    try:
        n = {'images': 0, 'annotations': 0}
        (tmp/'images').mkdir()
        for name, (src, f) in sorted(images(srcs).items()):
            data = src.read(f)
            if data is not None: (tmp/'images'/name).write_bytes(data); n['images'] += 1
        for k, src in srcs.items():
            a = SOURCES[k]['annotations']
            for f in (src.files(a) if a else []):
                rel = Path(f[0]).relative_to(a)
                if rel.name.startswith('._'): continue   # macOS resource forks
                data = src.read(f)
                if data is None: continue
                (tmp/'annotations'/rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp/'annotations'/rel).write_bytes(data); n['annotations'] += 1
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True); raise
    return n

def build_fixture(srcs, dest:Path)->list:
    "Write the `FIXTURE` files and the `STAND_INS` into `dest` (replacing what is there); returns the names."
    from PIL import Image
    allf = images(srcs)
    dest.mkdir(parents=True, exist_ok=True)
    for p in dest.iterdir():
        if p.is_file(): p.unlink()
    for name in FIXTURE:
        src, f = allf[name]; (dest/name).write_bytes(src.read(f))
    for name, mode in STAND_INS.items():
        src, f = allf[name]
        im = Image.open(io.BytesIO(src.read(f))); im.load()
        im.convert(mode).save(dest/name, format='JPEG', quality=75)
    return sorted(p.name for p in dest.iterdir())

def default_dest()->Path:
    "Where `untar_data(URLs.PETS)` extracts to: fastai's data dir, then `oxford-iiit-pet`."
    from fastai.data.external import fastai_path
    return fastai_path('data')/'oxford-iiit-pet'

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dest', default=None, help="default: fastai's data dir/oxford-iiit-pet")
    p.add_argument('--mirror-root', default=None, help='folder of local bare git dirs named <owner>+<name>/repo')
    p.add_argument('--ltsach', default=None, help='git dir of LTSACH/AILearningHub')
    p.add_argument('--naveen', default=None, help='git dir of Naveen-Dodda/Sample_Pets_dataset')
    p.add_argument('--fixture', default=None, help='write the small test fixture to this folder instead')
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        srcs = {k: _recurse(s) for k, s in _sources(a, work).items()}
        if a.fixture:
            names = build_fixture(srcs, Path(a.fixture))
            print(f"{a.fixture}: {len(names)} files, {sum((Path(a.fixture)/n).stat().st_size for n in names):,} bytes")
            return 0
        dest = Path(a.dest).expanduser() if a.dest else default_dest()
        n = build(srcs, dest)
    print(f"{dest}: {n['images']} files in images/, {n['annotations']} in annotations/")
    return 0

if __name__ == '__main__': sys.exit(main())
