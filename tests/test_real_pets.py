"""The real Oxford-IIIT Pets, offline, on the committed fixture (tests/fixtures/real_pets, see its README): the lessons'
one-cell switch to `oxford_pets_path()`, the presizing `DataBlock` and `summary`, a short fine-tune of the offline
Lite0, and `imgcls-course train --regex`; each odd file of the real set is read or explained in one line."""
import contextlib, io, json, re, shutil, subprocess
from pathlib import Path
import pytest, torch
from PIL import Image, UnidentifiedImageError
from conftest import BIN, ROOT
from imgcls_course.data import PETS_RE, is_cat, oxford_pets_path
from imgcls_course.images import open_rgb, verify_images, ImageReadError
from imgcls_course.folder import scan_folder
from imgcls_course.presizing import pets_dblock, pets_dls
from imgcls_course.models import lite0_learner
from imgcls_course.running import cell_flags
from fastai.data.external import fastai_cfg
from fastai.vision.all import get_image_files, set_seed

pytestmark = pytest.mark.slow
FIXTURE = Path(__file__).resolve().parent/'fixtures'/'real_pets'
CLI = str(BIN/'imgcls-course')
ODD = {'Abyssinian_34.jpg': ('GIF', 'P'), 'Abyssinian_5.jpg': ('PNG', 'RGBA'),   # real files of the set
       'Bombay_123.jpg': ('JPEG', 'L'), 'pug_139.jpg': ('JPEG', 'CMYK')}          # stand-ins (see the README)
MAT = 'Abyssinian_101.mat'
JPGS = sorted(p.name for p in (FIXTURE/'images').glob('*.jpg'))
BREEDS = sorted({re.match(PETS_RE, n).group(1) for n in JPGS})

@pytest.fixture
def real_pets(tmp_path, monkeypatch):
    "A copy of the fixture where fastai keeps its data, under a temporary $FASTAI_HOME; the dataset's folder."
    home = tmp_path/'fastai_home'
    shutil.copytree(FIXTURE/'images', home/'data'/'oxford-iiit-pet'/'images')
    def no_download(*args, **kwargs): raise AssertionError(f"tried to download {args[:1]}")
    monkeypatch.setattr('fastdownload.core.download_url', no_download)
    monkeypatch.setenv('FASTAI_HOME', str(home)); fastai_cfg.cache_clear()   # fastai caches its config
    yield home/'data'/'oxford-iiit-pet'
    monkeypatch.undo(); fastai_cfg.cache_clear()

def test_fixture_is_what_its_readme_says():
    ims = {n: Image.open(FIXTURE/'images'/n) for n in JPGS}
    fmts = {n: (im.format, im.mode) for n, im in ims.items()}
    assert {n: fmts[n] for n in ODD} == ODD
    assert all(f == ('JPEG', 'RGB') for n, f in fmts.items() if n not in ODD), fmts
    with pytest.raises(UnidentifiedImageError): Image.open(FIXTURE/'images'/MAT)
    cats, dogs = [b for b in BREEDS if is_cat(b)], [b for b in BREEDS if not is_cat(b)]
    assert len(cats) >= 3 and len(dogs) >= 3 and 'american_pit_bull_terrier' in dogs, BREEDS
    readme = (FIXTURE/'README.md').read_text()
    for s in ('CC BY-SA 4.0', 'Parkhi', 'LTSACH/AILearningHub', 'Naveen-Dodda/Sample_Pets_dataset', MAT, *ODD):
        assert s in readme, s
    assert sum(p.stat().st_size for p in FIXTURE.rglob('*') if p.is_file()) < 3_000_000

def test_oxford_pets_path_finds_the_copy(real_pets):
    assert oxford_pets_path() == real_pets
    assert not list((real_pets.parents[1]/'archive').glob('*.tgz'))

def _switch_cell(nb):
    "The one `#| online` cell of lesson `nb` that calls `oxford_pets_path()` (not run by the tests or Run All)."
    cells = [''.join(c['source']) for c in json.loads((ROOT/'nbs'/nb).read_text())['cells'] if c['cell_type'] == 'code']
    found = [s for s in cells if 'oxford_pets_path()' in s and {'online', 'eval'} <= cell_flags(s)]
    assert len(found) == 1, (nb, found)
    return found[0]

def test_lessons_switch_in_one_cell(real_pets):
    ns = {'pets_dls': pets_dls}
    exec(_switch_cell('10_presizing.ipynb'), ns)
    assert ns['path'] == real_pets
    exec(_switch_cell('32_fastai_workflow.ipynb'), ns)
    assert sorted(ns['dls'].vocab) == BREEDS
    assert len(ns['dls'].train_ds) + len(ns['dls'].valid_ds) == len(JPGS)   # the .mat is no image; the rest are

@pytest.mark.parametrize('method', ['fastai', 'course'])
def test_presizing_dblock_on_real_files(real_pets, method):
    images = oxford_pets_path()/'images'
    names = sorted(p.name for p in get_image_files(images))
    assert names == JPGS                                            # the .mat is not listed, the GIF and PNG are
    dblock = pets_dblock(size=64, method=method)
    if method == 'fastai':
        with contextlib.redirect_stdout(io.StringIO()) as out: dblock.summary(images, bs=4)
        text = out.getvalue()
        assert 'Building one batch' in text and 'Traceback' not in text, text[-2000:]
        assert 'TensorImage of size 4x3x64x64' in text, text[-2000:]   # the batch after the batch transforms
    dls = pets_dls(images, size=64, bs=4, method=method)
    assert sorted(dls.vocab) == BREEDS
    xb = dls.test_dl([images/n for n in ODD]).one_batch()[0]         # each odd image decodes to 3 channels
    assert xb.shape == (4, 3, 64, 64) and bool(torch.isfinite(xb).all())
    assert all(float(x.std()) > 0.01 for x in xb), [float(x.std()) for x in xb]   # a picture, not a flat fill

def test_fine_tune_lite0_on_real_files(real_pets):
    set_seed(42, reproducible=True)
    dls = pets_dls(real_pets/'images', size=64, bs=4)
    learn = lite0_learner(dls)
    head0 = [p.detach().clone() for p in learn.model[-1].parameters()]
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(1, base_lr=2e-3)
    vals = learn.recorder.values
    assert len(vals) == 1 and all(torch.isfinite(torch.tensor(v)).all() for v in vals), vals
    assert any(not torch.equal(a, b.detach()) for a, b in zip(head0, learn.model[-1].parameters()))
    probs, _ = learn.get_preds(dl=dls.test_dl([real_pets/'images'/n for n in ODD]))
    assert probs.shape == (len(ODD), len(BREEDS))
    assert torch.allclose(probs.sum(1), torch.ones(len(ODD)), atol=1e-4)

def test_odd_files_read_or_explained(real_pets):
    images = real_pets/'images'
    for n in ODD: assert open_rgb(images/n).mode == 'RGB'
    with pytest.raises(ImageReadError, match=re.escape(MAT)): open_rgb(images/MAT)
    good, bad = verify_images(sorted(images.iterdir()))
    assert sorted(p.name for p in good) == JPGS
    assert [p.name for p, _ in bad] == [MAT] and '\n' not in bad[0][1], bad
    scan = scan_folder(images, regex=PETS_RE, show_progress=False)
    assert sorted(p.name for p in scan.files) == JPGS and sorted(scan.counts) == BREEDS
    assert [(p.name, why) for p, why in scan.skipped] == [(MAT, 'not an image file (extension)')]
    note = [w for w in scan.warnings if 'read anyway' in w]
    assert note == ["2 files named .jpg are GIF/PNG: read anyway (Abyssinian_34.jpg: GIF, Abyssinian_5.jpg: PNG)"], \
        scan.warnings

def test_cli_train_and_predict_on_real_files(real_pets, tmp_path):
    images, out = real_pets/'images', tmp_path/'out'
    r = subprocess.run([CLI, 'train', str(images), '--regex', PETS_RE, '--out', str(out), '--epochs', '1',
                        '--size', '64', '--bs', '4', '--no-tta'], capture_output=True, text=True, timeout=600)
    log = r.stdout + r.stderr
    assert r.returncode == 0 and 'Traceback' not in log, log[-4000:]
    assert len([l for l in log.splitlines() if MAT in l]) == 1, log[-4000:]
    assert f'skipped {MAT}: not an image file (extension)' in log, log[-4000:]
    assert ("warning: 2 files named .jpg are GIF/PNG: read anyway (Abyssinian_34.jpg: GIF, Abyssinian_5.jpg: PNG)"
            in log), log[-4000:]
    m = json.loads((out/'metrics.json').read_text())
    assert sorted(m['classes']) == BREEDS and m['n_images'] == len(JPGS), (m['classes'], m['n_images'])
    assert [Path(p).name for p, _ in m['skipped']] == [MAT]
    model = out/'model.pth' if (out/'model.pth').exists() else out/'model.pkl'   # weights only, where written
    r = subprocess.run([CLI, 'predict', str(model), *[str(images/n) for n in (*ODD, MAT)]],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and 'Traceback' not in r.stdout + r.stderr, (r.stdout + r.stderr)[-4000:]
    lines = r.stdout.splitlines()
    assert [Path(l.split(': ')[0]).name for l in lines] == list(ODD), r.stdout
    assert all(re.search(r': \S+ [01]\.\d{3}', l) for l in lines), r.stdout
    why = [l for l in r.stderr.splitlines() if MAT in l]
    assert len(why) == 1 and why[0].startswith(f"{images/MAT}: skipped, unreadable: cannot read image"), r.stderr
