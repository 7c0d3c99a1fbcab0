"The command-line tool end to end: a messy folder, split folders, folder errors, the report in a browser, predict."
import hashlib, json, pickle, re, shutil, subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
import pytest
import torch
from PIL import Image
from conftest import BIN, dump_dom
from imgcls_course.data import make_pet_image
from imgcls_course.folder import FolderError, scan_folder, describe_layout
from imgcls_course.cli import Recipe, train, main, predict
from imgcls_course.report import MODEL_FORMAT

CLI = str(BIN/'imgcls-course')
FAST = ['--arch', 'efficientnet_lite0', '--epochs', '1', '--size', '64', '--bs', '8', '--quiet']
def LITE0(**kw): return Recipe(arch='efficientnet_lite0', epochs=1, size=64, bs=8, n_cams=2, **kw)   # FAST's recipe
# The layouts the tool reads and the folders it refuses, each with its message, are one table in nbs/70a_folder.ipynb;
# here: what only a whole run shows (training, outputs, exit status, the browser), and what the table does not hold.

def _make_messy(d:Path)->Path:
    for b in ('Bengal', 'samoyed', 'pug'):
        (d/b).mkdir(parents=True)
        for i in range(8): make_pet_image(b, 1, i)[0].resize((96, 80)).save(d/b/f'{b}_{i}.jpg')
    (d/'README.txt').write_text('my photos')
    (d/'pug'/'truncated.jpg').write_bytes((d/'pug'/'pug_0.jpg').read_bytes()[:300])
    (d/'samoyed'/'zero.png').write_bytes(b'')
    (d/'rare').mkdir(); shutil.copy(d/'pug'/'pug_1.jpg', d/'rare'/'only.jpg')
    return d

def _split_tree(d:Path, n=dict(train=10, val=4, test=4), breeds=('Bengal', 'pug'))->Path:
    "DATA/<split>/<breed>/<breed>_<i>.jpg, distinct images in every split."
    for k, (split, m) in enumerate(n.items()):
        for b in breeds:
            (d/split/b).mkdir(parents=True)
            for i in range(m): make_pet_image(b, 1, 100*k + i)[0].resize((96, 80)).save(d/split/b/f'{b}_{i}.jpg')
    return d

def _tiny_tree(root:Path, dirs, n=3)->Path:
    for rel in dirs:
        (root/rel).mkdir(parents=True, exist_ok=True)
        for i in range(n): Image.new('RGB', (40, 32), (60*i, 90, 200)).save(root/rel/f'{i}.jpg')
    return root

def _snapshot(d): return {p: p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file()}

def _run(*args, timeout=600):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "The messy one-folder-per-class layout, trained with the LR finder (so the report has all four figures)."
    root = tmp_path_factory.mktemp('cli')
    folder = _make_messy(root/'photos'); before = _snapshot(folder)
    r = _run('train', folder, '--out', root/'out', *FAST, '--lr', 'find', '--lr-find-iters', '8')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return root, folder, before, r

@pytest.mark.slow
def test_train_writes_outputs_and_leaves_folder_untouched(trained):
    root, folder, before, r = trained
    assert sorted(o.name for o in (root/'out').iterdir()) == ['metrics.json', 'model.json', 'model.pkl', 'model.pth',
                                                             'report.html']
    assert _snapshot(folder) == before, "train modified the user's folder"
    m = json.loads((root/'out'/'metrics.json').read_text())
    assert m['classes'] == ['Bengal', 'pug', 'samoyed'] and m['n_images'] == 24
    n = (m['n_train'], m['n_valid'], m['n_test'])
    assert n == (18, 6, 0), n   # 2 of each class's 8 for validation
    assert m['layout'] == ('layout: one sub-folder per class, no split folders, so a random 20% validation split '
                           '(24 images), 3 classes'), m['layout']
    why = {Path(p).name: w for p, w in m['skipped']}
    assert why['truncated.jpg'].startswith('unreadable') and why['zero.png'].startswith('unreadable')
    assert why['README.txt'].startswith('not an image') and 'too few' in why['only.jpg']
    # the plain (un-augmented) accuracy of the report is that of the model kept: fastai's own on the same validation
    # set after the last epoch, or the probe's if fine-tuning did not beat it there
    assert m['kept'] in ('fine-tuned', 'linear probe'), m['kept']
    tuned, probe = m['history'][-1]['accuracy'], m['probe_valid_accuracy']
    assert m['kept'] == ('linear probe' if probe > tuned else 'fine-tuned'), (m['kept'], probe, tuned)
    assert abs(m['valid_accuracy_no_tta'] - max(probe, tuned)) < 1e-6, (m['valid_accuracy_no_tta'], probe, tuned)
    assert m['lr'] == m['lr_suggestions'].get('valley', 2e-3), (m['lr'], m['lr_suggestions'])
    assert m['test_accuracy'] is None

@pytest.mark.slow
def test_train_val_test_folders_are_the_split(tmp_path):
    "train/ + val/ + test/: the labels are the classes (not 'train', 'val'), the split the folders', test held out."
    folder = _split_tree(tmp_path/'data'); before = _snapshot(folder)
    r = _run('train', folder, '--out', tmp_path/'out', *FAST[:-1], '--lr', '1e-3')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert 'layout: train/ + val/ + test/ folders (20 train, 8 valid, 8 test), 2 classes' in r.stdout, r.stdout
    m = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert m['classes'] == ['Bengal', 'pug'], m['classes']
    assert (m['n_train'], m['n_valid'], m['n_test']) == (20, 8, 8)
    assert _snapshot(folder) == before
    # the held-out accuracy is that of the exported model on the test/ images
    from fastai.learner import load_learner
    learn = load_learner(tmp_path/'out'/'model.pkl', cpu=True)
    files = sorted((folder/'test').rglob('*.jpg'))
    with learn.no_bar(): preds, _ = learn.get_preds(dl=learn.dls.test_dl(files, num_workers=0))
    acc = sum(learn.dls.vocab[int(i)] == f.parent.name for i, f in zip(preds.argmax(1), files))/len(files)
    assert abs(m['test_accuracy'] - acc) < 1e-6, (m['test_accuracy'], acc)
    assert f"held-out test accuracy {m['test_accuracy']:.1%}" in r.stdout

def test_regex_labels_with_split_folders(tmp_path):
    "fastbook's file-name labels still work, and the split folders still give the split."
    folder = _split_tree(tmp_path/'d', n=dict(train=3, valid=2))
    for p in list(folder.rglob('*.jpg')): p.rename(p.parent.parent/p.name)   # flatten: d/train/Bengal_0.jpg
    scan = scan_folder(folder, regex=r'^(.+)_\d+\.jpg$', show_progress=False)
    assert Counter(zip(scan.splits, scan.labels)) == {('train', 'Bengal'): 3, ('train', 'pug'): 3,
                                                      ('valid', 'Bengal'): 2, ('valid', 'pug'): 2}
    assert describe_layout(scan, regex='x') == ('layout: train/ + valid/ folders, labels from file names (--regex) '
                                                '(6 train, 4 valid), 2 classes')

def _vehicles(d:Path)->Path: return _tiny_tree(d, ['train', 'bus', 'car'])   # a class that is really called 'train'

def test_layout_classes_overrides(tmp_path):
    "A class that is really called 'train' (a vehicles set): --layout classes reads every sub-folder as a class."
    folder = _vehicles(tmp_path/'vehicles')
    with pytest.raises(FolderError, match='beside train/'): scan_folder(folder, show_progress=False)
    scan = scan_folder(folder, show_progress=False, layout='classes')
    assert sorted(scan.counts) == ['bus', 'car', 'train'] and set(scan.splits) == {None}

def test_folder_errors_get_one_line(tmp_path, capsys):
    "An error at each stage of reading the folder: exit status 2, one line that says what to change, no outputs."
    one_class = _tiny_tree(tmp_path/'one_class', ['cat'])
    cases = {  # what goes wrong -> (the command's arguments after `train`, a part of the message)
        'a folder that is not there': ([tmp_path/'nope'], 'does not exist'),
        'a layout read two ways': ([_vehicles(tmp_path/'vehicles')], 'beside train/'),
        'one class': ([one_class], 'Need at least two classes'),
        '--out inside the folder': ([one_class, '--out', one_class/'o'], 'inside the image folder'),
        'a broken --regex': ([one_class, '--regex', '(a'], 'missing ), unterminated subpattern'),
    }
    for what, (args, msg) in cases.items():
        out = tmp_path/'o'
        rc = main(['train', *map(str, args), *([] if '--out' in args else ['--out', str(out)]), '--quiet'])
        err = capsys.readouterr().err.strip()
        assert rc == 2, (what, rc, err)
        assert err.startswith('imgcls-course: error: ') and msg in err, (what, err)
        assert '\n' not in err and 'Traceback' not in err, (what, err)
        assert not out.exists() and not (one_class/'o').exists(), f"{what}: wrote outputs"

def test_folder_error_from_the_shell(tmp_path):
    "The installed command: exit status 2 and one line on stderr, no traceback, no outputs."
    r = _run('train', _vehicles(tmp_path/'vehicles'), '--out', tmp_path/'o', timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'beside train/' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr and not (tmp_path/'o').exists(), r.stderr

class _Links(HTMLParser):
    def __init__(self): super().__init__(); self.imgs, self.hrefs, self.ids, self.body = [], [], set(), {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        if tag == 'img': self.imgs.append(a)
        if tag == 'a' and 'href' in a: self.hrefs.append(a['href'])
        if tag == 'body': self.body = a

@pytest.mark.slow
def test_report_renders_in_headless_chromium(trained, tmp_path):
    "The report loads in a real browser, every figure decodes, and every link points inside the page."
    dom = dump_dom((trained[0]/'out'/'report.html').as_uri(), tmp_path/'prof')
    p = _Links(); p.feed(dom)
    assert len(p.imgs) == 4, f"expected 4 figures, found {len(p.imgs)}"
    assert all(i.get('data-loaded') == '1' for i in p.imgs), "a figure did not decode in the browser"
    assert p.body.get('data-images-ok') == '1'
    assert p.hrefs and all(h.startswith('#') and h[1:] in p.ids for h in p.hrefs), f"broken links: {p.hrefs}"
    assert not re.search(r'(src|href)="(https?:|file:)', dom), "the report must not depend on outside files"

@pytest.mark.slow
def test_predict_prints_probabilities_and_saves_cams(trained, tmp_path):
    root, folder = trained[:2]
    imgs = [folder/'Bengal'/'Bengal_0.jpg', folder/'pug'/'pug_3.jpg', folder/'pug'/'truncated.jpg']
    r = _run('predict', root/'out'/'model.pth', *imgs, '-k', '2', '--cam-dir', tmp_path/'cams', timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == 2 and all(len(re.findall(r'\w+ (0\.\d{3}|1\.000)', l)) == 2 for l in lines), r.stdout
    probs = [[float(x) for x in re.findall(r' (\d\.\d{3})', l)] for l in lines]
    assert all(p[0] >= p[1] for p in probs), f"classes must come most likely first: {probs}"
    assert 'truncated.jpg: skipped, unreadable' in r.stderr
    assert sorted(o.name for o in (tmp_path/'cams').iterdir()) == ['Bengal_0_cam.png', 'pug_3_cam.png']

def test_predict_bad_model_is_a_clear_error(tmp_path):
    (tmp_path/'m.pkl').write_bytes(b'not a model')
    r = _run('predict', tmp_path/'m.pkl', 'x.jpg', '--trust-pickle', timeout=120)
    assert r.returncode == 2 and 'not a model written by' in r.stderr and 'Traceback' not in r.stderr

class _Plant:
    "What a model file from someone else can hold: unpickling it runs code, here writing a marker file."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (exec, (f"open({self.marker!r}, 'w').write('unpickled')",))

def test_predict_refuses_a_pickle_unless_trusted(tmp_path, capsys):
    "A model.pkl that runs code when unpickled: refused without --trust-pickle, the code never runs; run with it."
    marker, img = tmp_path/'marker.txt', tmp_path/'a.jpg'
    make_pet_image('pug', 1, 0)[0].save(img)
    (tmp_path/'model.pkl').write_bytes(pickle.dumps(_Plant(marker)))
    r = _run('predict', tmp_path/'model.pkl', img, timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
    assert 'can run any code' in r.stderr and 'model.pth' in r.stderr and '--trust-pickle' in r.stderr, r.stderr
    assert not marker.exists(), "predict unpickled model.pkl without --trust-pickle"
    rc = main(['predict', str(tmp_path/'model.pkl'), str(img), '--trust-pickle'])   # in this process: quicker
    assert marker.read_text() == 'unpickled', "with --trust-pickle the file is unpickled (so the check above can fail)"
    err = capsys.readouterr().err
    assert rc == 2 and 'not a model written by' in err and 'Traceback' not in err, err

def test_predict_help_explains_the_flag(capsys):
    with pytest.raises(SystemExit) as e: main(['predict', '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert e.value.code == 0 and '--trust-pickle' in text and 'can run any code' in text, text
    assert 'model.pth' in text and 'model.json' in text, text

def _spec(pth, **kw)->dict:
    "A model.json for the weights file `pth` (its checksum), for a 2-class Lite0 with the probe head."
    return dict(dict(format=MODEL_FORMAT, version=1, classes=['a', 'b'], arch='efficientnet_lite0', head='probe',
                     image_size=64, tta=False, weights_sha256=hashlib.sha256(pth.read_bytes()).hexdigest(),
                     preprocessing=dict(open='open_rgb', item_size=96, resize='fastai', normalize=None)), **kw)

def test_weights_only_model_errors_get_one_line(tmp_path, capsys):
    "Missing, corrupt or mismatched model.json / model.pth: exit status 2, one line, nothing unpickled."
    marker = tmp_path/'marker.txt'
    def missing_json(d): (d/'model.json').unlink()
    def corrupt_json(d): (d/'model.json').write_text('{"classes": ["a", ')
    def json_without_classes(d): (d/'model.json').write_text(json.dumps({**_spec(d/'model.pth'), 'classes': None}))
    def other_weights(d): torch.save({'w': torch.zeros(3)}, d/'model.pth')
    def planted_weights(d):   # a model.pth that runs code when unpickled, with a model.json that matches it
        torch.save(_Plant(marker), d/'model.pth'); (d/'model.json').write_text(json.dumps(_spec(d/'model.pth')))
    def other_arch(d):   # weights and JSON that agree, for a model this architecture cannot hold
        (d/'model.json').write_text(json.dumps(_spec(d/'model.pth', arch='no_such_model_anywhere')))
    cases = {missing_json: 'model.json does not exist', corrupt_json: 'not a model.json written by',
             json_without_classes: "'classes' is missing", other_weights: 'SHA-256 differs',
             planted_weights: 'weights_only=True) refused it', other_arch: 'could not rebuild the model'}
    for breaks, msg in cases.items():
        d = tmp_path/breaks.__name__; d.mkdir()
        torch.save({'w': torch.ones(2)}, d/'model.pth'); (d/'model.json').write_text(json.dumps(_spec(d/'model.pth')))
        breaks(d)
        for arg in (d/'model.pth', d):
            rc = main(['predict', str(arg), str(tmp_path/'a.jpg')])
            err = capsys.readouterr().err.strip()
            assert rc == 2 and err.startswith('imgcls-course: error: ') and msg in err, (breaks.__name__, err)
            assert '\n' not in err and 'Traceback' not in err, (breaks.__name__, err)
    assert not marker.exists(), "torch.load(weights_only=True) let the planted model.pth run its code"

@pytest.mark.slow
def test_weights_only_model_predicts_as_the_pickle(trained, tmp_path):
    "model.pth + model.json give fastai's exported learner's probabilities (within 1e-5), with TTA and without."
    from fastai.learner import load_learner
    root, folder = trained[:2]
    spec = json.loads((root/'out'/'model.json').read_text())
    assert (spec['classes'], spec['arch'], spec['head'], spec['image_size'], spec['tta']) == (
        ['Bengal', 'pug', 'samoyed'], 'efficientnet_lite0', 'probe', 64, True), spec
    imgs = [folder/'Bengal'/'Bengal_0.jpg', folder/'pug'/'pug_3.jpg', folder/'samoyed'/'samoyed_5.jpg']
    probs = {}
    for tta in (True, False):   # the same model with the other setting: a copy of each file, the flag changed
        d = tmp_path/f'tta_{tta}'; d.mkdir()
        shutil.copy(root/'out'/'model.pth', d); (d/'model.json').write_text(json.dumps({**spec, 'tta': tta}))
        learn = load_learner(root/'out'/'model.pkl'); learn.imgcls_tta = tta; learn.export(d/'model.pkl')
        for name, kw in (('weights', {}), ('pickle', dict(trust_pickle=True))):
            res = predict(d/('model.pkl' if kw else 'model.pth'), imgs, k=3, quiet=True, **kw)
            probs[tta, name] = torch.tensor([[dict(r)[c] for c in spec['classes']] for _, r in res])
        assert (probs[tta, 'weights'] - probs[tta, 'pickle']).abs().max() < 1e-5, (tta, probs)
    assert (probs[True, 'weights'] - probs[False, 'weights']).abs().max() > 1e-4, "TTA changed nothing: not tested"

@pytest.mark.slow
def test_crash_while_writing_leaves_no_half_written_outputs(trained, tmp_path, monkeypatch):
    "A crash in the middle of exporting the model leaves neither a partial model nor a report, nor temp files."
    from fastai.learner import Learner
    def _half_then_crash(self, fname, **kw):
        Path(fname).write_bytes(b'partial'); raise OSError('disk full')
    monkeypatch.setattr(Learner, 'export', _half_then_crash)
    out = tmp_path/'out'; out.mkdir(); (out/'keep.txt').write_text('mine')
    with pytest.raises(OSError, match='disk full'):
        train(trained[1], out=out, recipe=LITE0(lr=1e-3), quiet=True)
    assert sorted(o.name for o in out.iterdir()) == ['keep.txt']

@pytest.mark.slow
def test_small_folder_with_default_lr_finder_settings(trained, tmp_path):
    "40 LR-finder steps on a 3-batch folder diverge early: fastai's suggestions raise IndexError there, ours fall back."
    r = train(trained[1], out=tmp_path/'o', recipe=LITE0(lr=None), quiet=True)
    assert (tmp_path/'o'/'report.html').exists()
    # the rate used is the finder's valley, or the fallback where the curve was too short to suggest one
    assert r.lr == r.lr_suggestions.get('valley', 2e-3) and 1e-7 < r.lr < 1, (r.lr, r.lr_suggestions)

@pytest.mark.slow
def test_a_budget_too_small_for_fine_tuning(trained, tmp_path):
    "`--budget` below even Lite0's probe: Lite0's probe alone, a line saying it is over, a model that predicts."
    folder, out = trained[1], tmp_path/'o'
    r = _run('train', folder, '--out', out, '--budget', '1', '--size', '64', '--bs', '8')
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    plan = next(l for l in r.stdout.splitlines() if l.strip().startswith('plan:'))
    assert 'efficientnet_lite0 at 64 px, the linear probe alone' in plan and 'OVER the 1 s budget' in plan, plan
    assert 'efficientnet_lite2 would take about' in plan and 'No fine-tuning (0 epochs)' in r.stdout, r.stdout
    m = json.loads((out/'metrics.json').read_text())
    assert (m['arch'], m['epochs'], m['kept'], m['history'], m['budget']) == (
        'efficientnet_lite0', 0, 'linear probe', [], 1), m
    assert m['plan']['seconds'] > 1 and m['plan']['why'] in plan, m['plan']
    assert m['valid_accuracy_no_tta'] == m['probe_valid_accuracy'], m   # the probe is the model
    page = (out/'report.html').read_text()
    assert 'No fine-tuning: the model is the linear probe' in page and 'OVER the 1 s budget' in page
    res = predict(out, [folder/'pug'/'pug_3.jpg'], quiet=True)
    assert res[0][1][0][0] in m['classes'], res

def test_budget_and_auto_arch_on_the_command_line():
    "`--budget` and `--arch auto` reach the `Recipe`; `--epochs` left out means: as many as the budget allows."
    from imgcls_course.cli import _parser, _recipe
    rc = _recipe(_parser().parse_args(['train', 'x', '--budget', '60']))
    assert (rc.budget, rc.arch, rc.epochs) == (60., 'auto', None), rc
    assert _recipe(_parser().parse_args(['train', 'x', '--arch', 'efficientnet_lite1', '--epochs', '2'])).epochs == 2

@pytest.mark.slow
def test_tta_is_the_mean_of_the_image_and_its_mirror(trained):
    "The tool's TTA: softmax of the batch and of its left-right mirror, averaged (checked against the model itself)."
    from imgcls_course.cli import _predict
    from imgcls_course.report import load_model
    root, folder = trained[:2]
    learn = load_model(root/'out')
    dl = learn.dls.test_dl(sorted((folder/'pug').glob('pug_*.jpg'))[:3], num_workers=0)
    p, xb = _predict(learn, dl, True, True), torch.cat([b[0] for b in dl])   # the loader may batch them one by one
    learn.model.eval()
    with torch.no_grad(): plain, mirrored = learn.model(xb).softmax(1), learn.model(xb.flip(-1)).softmax(1)
    assert (p.plain - plain).abs().max() < 1e-5 and (p.probs - (plain + mirrored)/2).abs().max() < 1e-5
    assert (plain - mirrored).abs().max() > 1e-4, "the mirror changed nothing: not tested"
