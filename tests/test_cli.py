"The command-line tool end to end: a messy folder, the report in a real browser, predict, atomic outputs."
import json, os, re, shutil, subprocess
from html.parser import HTMLParser
from pathlib import Path
import pytest
from conftest import BIN
from imgcls_course.data import make_pet_image

CLI = str(BIN/'imgcls-course')
FAST = ['--epochs', '1', '--size', '64', '--bs', '8', '--lr-find-iters', '8', '--quiet']

def _make_messy(d:Path)->Path:
    for b in ('Bengal', 'samoyed', 'pug'):
        (d/b).mkdir(parents=True)
        for i in range(8): make_pet_image(b, 1, i)[0].resize((96, 80)).save(d/b/f'{b}_{i}.jpg')
    (d/'README.txt').write_text('my photos')
    (d/'pug'/'truncated.jpg').write_bytes((d/'pug'/'pug_0.jpg').read_bytes()[:300])
    (d/'samoyed'/'zero.png').write_bytes(b'')
    (d/'rare').mkdir(); shutil.copy(d/'pug'/'pug_1.jpg', d/'rare'/'only.jpg')
    return d

def _snapshot(d): return {p: p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file()}

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    folder = _make_messy(root/'photos'); before = _snapshot(folder)
    r = subprocess.run([CLI, 'train', str(folder), '--out', str(root/'out')] + FAST, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return root, folder, before, r

def test_train_writes_outputs_and_leaves_folder_untouched(trained):
    root, folder, before, r = trained
    assert sorted(o.name for o in (root/'out').iterdir()) == ['metrics.json', 'model.pkl', 'report.html']
    assert _snapshot(folder) == before, "train modified the user's folder"
    m = json.loads((root/'out'/'metrics.json').read_text())
    assert m['classes'] == ['Bengal', 'pug', 'samoyed'] and m['n_images'] == 24
    why = {Path(p).name: w for p, w in m['skipped']}
    assert why['truncated.jpg'].startswith('unreadable') and why['zero.png'].startswith('unreadable')
    assert why['README.txt'].startswith('not an image') and 'too few' in why['only.jpg']
    assert 0 <= m['valid_accuracy'] <= 1 and m['lr'] > 0

class _Links(HTMLParser):
    def __init__(self): super().__init__(); self.imgs, self.hrefs, self.ids, self.body = [], [], set(), {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        if tag == 'img': self.imgs.append(a)
        if tag == 'a' and 'href' in a: self.hrefs.append(a['href'])
        if tag == 'body': self.body = a

def _chromium():
    for c in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(c): return shutil.which(c)
    if os.environ.get('CI'): pytest.fail("CI must install Debian's chromium to test the report page")
    pytest.skip("no chromium here (CI installs it)")

def test_report_renders_in_headless_chromium(trained, tmp_path):
    "The report loads in a real browser, every figure decodes, and every link points inside the page."
    root = trained[0]
    page = root/'out'/'report.html'
    r = subprocess.run([_chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                        '--disable-background-networking', '--disable-component-update', '--disable-sync',
                        f'--user-data-dir={tmp_path/"prof"}', '--virtual-time-budget=5000', '--dump-dom', page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    p = _Links(); p.feed(r.stdout)
    assert len(p.imgs) == 4, f"expected 4 figures, found {len(p.imgs)}"
    assert all(i.get('data-loaded') == '1' for i in p.imgs), "a figure did not decode in the browser"
    assert p.body.get('data-images-ok') == '1'
    assert p.hrefs and all(h.startswith('#') and h[1:] in p.ids for h in p.hrefs), f"broken links: {p.hrefs}"
    assert not re.search(r'(src|href)="(https?:|file:)', r.stdout), "the report must not depend on outside files"

def test_predict_prints_probabilities_and_saves_cams(trained, tmp_path):
    root, folder = trained[:2]
    imgs = [folder/'Bengal'/'Bengal_0.jpg', folder/'pug'/'pug_3.jpg', folder/'pug'/'truncated.jpg']
    r = subprocess.run([CLI, 'predict', str(root/'out'/'model.pkl'), *map(str, imgs), '-k', '2', '--cam-dir', str(tmp_path/'cams')],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == 2 and all(len(re.findall(r'\w+ (0\.\d{3}|1\.000)', l)) == 2 for l in lines), r.stdout
    assert 'truncated.jpg: skipped, unreadable' in r.stderr
    assert sorted(o.name for o in (tmp_path/'cams').iterdir()) == ['Bengal_0_cam.png', 'pug_3_cam.png']

@pytest.mark.parametrize('setup,msg', [
    (lambda d: None, 'does not exist'),
    (lambda d: d.mkdir(), 'No image files found'),
    (lambda d: (d/'only').mkdir(parents=True) or make_pet_image('pug', 0, 0)[0].save(d/'only'/'a.jpg')
               or make_pet_image('pug', 0, 1)[0].save(d/'only'/'b.jpg'), 'Need at least two classes'),
])
def test_bad_folders_get_one_clear_line(tmp_path, setup, msg):
    d = tmp_path/'f'; setup(d)
    r = subprocess.run([CLI, 'train', str(d), '--out', str(tmp_path/'o')], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path/'o').exists()

def test_predict_bad_model_is_a_clear_error(tmp_path):
    (tmp_path/'m.pkl').write_bytes(b'not a model')
    r = subprocess.run([CLI, 'predict', str(tmp_path/'m.pkl'), 'x.jpg'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'not a model written by' in r.stderr and 'Traceback' not in r.stderr

def test_crash_while_writing_leaves_no_half_written_outputs(trained, tmp_path, monkeypatch):
    "A crash in the middle of exporting the model leaves neither a partial model nor a report, nor temp files."
    import imgcls_course.cli as cli
    from fastai.learner import Learner
    def _half_then_crash(self, fname, **kw):
        Path(fname).write_bytes(b'partial'); raise OSError('disk full')
    monkeypatch.setattr(Learner, 'export', _half_then_crash)
    out = tmp_path/'out'; out.mkdir(); (out/'keep.txt').write_text('mine')
    with pytest.raises(OSError, match='disk full'):
        cli.train(trained[1], out=out, epochs=1, size=64, bs=8, lr_find_iters=8, n_cams=2, quiet=True)
    assert sorted(o.name for o in out.iterdir()) == ['keep.txt']

def test_small_folder_with_default_lr_finder_settings(trained, tmp_path):
    "40 LR-finder steps on a 3-batch folder diverge early: fastai's suggestions raise IndexError there, ours fall back."
    import imgcls_course.cli as cli
    m = cli.train(trained[1], out=tmp_path/'o', epochs=1, size=64, bs=8, n_cams=2, quiet=True)
    assert m['lr'] > 0 and (tmp_path/'o'/'report.html').exists()
