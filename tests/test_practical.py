"""The practical lesson's modules (its parts 50a-50h) against scikit-learn and torch, over seeds, and bad inputs."""
import numpy as np, pytest, torch, torch.nn as nn
from sklearn.metrics import confusion_matrix as sk_confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight
from imgcls_course.interpret import confusion_matrix
from imgcls_course.models import imagenet_norm
from imgcls_course.signs import make_signs, shift_images, SIGN_CLASSES, SIGN_FAMILY, draw_sign
from imgcls_course.cnn_training import sign_cnn, lab_cnn, augment_batch, tensor_dls, train_cnn, predict_probs
from imgcls_course.dashboard import plot_epochs
from imgcls_course.splits import group_split, random_split, consecutive_split, stratified_split
from imgcls_course.imbalance import class_weights, oversampling_sampler, recall_precision
from imgcls_course.memory import activation_memory, max_batch_size
from imgcls_course.small_objects import tile_image, make_needles
from imgcls_course.opencv_baseline import colour_family_cv2


def _imbalanced(seed, n=300, k=6):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.7)); p = 0.02 + p; p /= p.sum()
    y = rng.choice(k, n, p=p)
    y[:k] = np.arange(k)   # every class present
    return rng.permutation(y)

def test_class_weights_match_sklearn():
    for seed in range(10):
        y = _imbalanced(seed)
        want = compute_class_weight('balanced', classes=np.unique(y), y=y)
        np.testing.assert_allclose(class_weights(y).numpy(), want, rtol=1e-6, err_msg=f'seed {seed}')

def test_class_weights_missing_class():
    with pytest.raises(ValueError, match='no examples'): class_weights([0, 2, 2])

def test_oversampling_draws_classes_evenly():
    for seed in range(5):
        y = _imbalanced(seed)
        draws = np.bincount(y[list(oversampling_sampler(y, num_samples=30000, seed=seed))], minlength=6)/30000
        np.testing.assert_allclose(draws, np.full(6, 1/6), atol=0.015, err_msg=f'seed {seed}')
        # reproducible for a given seed
        assert list(oversampling_sampler(y, seed=seed)) == list(oversampling_sampler(y, seed=seed)), f'seed {seed}'

def test_recall_precision_match_sklearn():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        yt = rng.integers(0, 7, 250)
        yp = np.where(rng.random(250) < 0.6, yt, rng.integers(0, 7, 250))
        yp[yp == 6] = 5                                 # class 6 is never predicted: precision undefined -> 0
        cm = confusion_matrix(yt, yp, 7)                # the course's one confusion matrix (lesson 40)
        np.testing.assert_array_equal(cm, sk_confusion_matrix(yt, yp, labels=range(7)), err_msg=f'seed {seed}')
        p, r, _, s = precision_recall_fscore_support(yt, yp, labels=range(7), zero_division=0)
        rp = recall_precision(cm)
        np.testing.assert_allclose(rp.recall.values, r, err_msg=f'seed {seed}')
        np.testing.assert_allclose(rp.precision.values, p, err_msg=f'seed {seed}')
        np.testing.assert_array_equal(rp.support.values, s, err_msg=f'seed {seed}')

@pytest.mark.parametrize('pct', [0.2, 0.25])
def test_stratified_split_matches_sklearn_class_counts(pct):
    for seed in range(10):
        y = _imbalanced(seed, n=200)
        tr, va = stratified_split(y, pct, seed=seed)
        assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y), f'seed {seed}'
        _, sk_va = train_test_split(np.arange(len(y)), test_size=pct, stratify=y, random_state=seed)
        n_va, n_sk = np.bincount(y[va], minlength=6), np.bincount(y[sk_va], minlength=6)
        assert np.abs(n_va - n_sk).max() <= 1, f'seed {seed}: {n_va} vs sklearn {n_sk}'
        # every class keeps its share within rounding
        assert np.all(np.abs(n_va - pct*np.bincount(y, minlength=6)) <= 0.5 + 1e-9), f'seed {seed}: {n_va}'

def test_group_split_never_shares_a_group():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        groups = rng.integers(0, 40, 300)
        tr, va = group_split(groups, 0.25, seed=seed)
        assert len(np.intersect1d(groups[tr], groups[va])) == 0, f'seed {seed}'
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(300)), f'seed {seed}'
        assert len(np.unique(groups[va])) == round(0.25*len(np.unique(groups))), f'seed {seed}'

@pytest.mark.parametrize('f', [lambda: group_split([1, 1, 1]), lambda: group_split([0, 1], valid_pct=1.5),
                               lambda: stratified_split([0, 1], valid_pct=0), lambda: random_split(10, 1.0),
                               lambda: consecutive_split(10, -0.1)])
def test_split_bad_inputs(f):
    with pytest.raises(ValueError): f()

def test_consecutive_split_takes_the_tail():
    tr, va = consecutive_split(100, 0.2)
    assert tr.tolist() == list(range(80)) and va.tolist() == list(range(80, 100))

@pytest.mark.parametrize('shape', [(1, 3, 8, 8), (3, 3, 16, 12), (2, 3, 5, 7)])
def test_activation_memory_of_a_conv_is_exact(shape):
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    r = activation_memory(conv, shape)
    n, _, h, w = shape
    assert r['params'] == 3*4*9 + 4 and r['state_bytes'] == 16*r['params']
    assert r['output_bytes'] == n*4*h*w*4
    assert r['saved_bytes'] == n*3*h*w*4   # conv saves its input (the weight is a parameter, not counted)

def test_activation_memory_linear_in_batch_and_quadratic_in_size():
    body = sign_cnn(size=64)[:4]   # the conv blocks accept any size divisible by 16
    def saved(bs, px): return activation_memory(body, (bs, 3, px, px))['saved_bytes']
    # saved = per_image*bs + a few per-channel batch-norm statistics that do not depend on the batch
    per64, per32 = saved(4, 64) - saved(2, 64), saved(4, 32) - saved(2, 32)
    assert saved(6, 64) - saved(4, 64) == per64           # exactly linear in the batch size
    assert per64 == 4*per32                                # exactly proportional to the pixels
    assert saved(2, 64) - per64 < 0.01*saved(2, 64)        # the constant part is negligible

def test_activation_memory_restores_model():
    m = sign_cnn().eval()
    activation_memory(m, (2, 3, 32, 32))
    assert not m.training
    assert all(len(o._forward_hooks) == 0 for o in m.modules())

def test_max_batch_size():
    m = sign_cnn()
    r = activation_memory(m, (2, 3, 32, 32))
    per = r['saved_bytes']/2*1.5
    for k in (1, 7, 33, 200):
        budget = r['state_bytes'] + k*per + 1
        assert max_batch_size(m, (3, 32, 32), budget, pow2=False) == k
        assert max_batch_size(m, (3, 32, 32), budget) == 2**int(np.log2(k))
    with pytest.raises(ValueError, match='Not even one'): max_batch_size(m, (3, 32, 32), r['state_bytes'])

def test_shift_images_shapes_and_light():
    x, _, _ = make_signs(3, 1, seed=0)
    for k in ('dark', 'bright', 'blur', 'lowres', 'crop'):
        y = shift_images(x, k); assert y.shape == x.shape and y.dtype == torch.uint8, (k, y.shape, y.dtype)
    xf = x.float()
    torch.testing.assert_close(shift_images(x, 'dark'), (xf*0.4).round().to(torch.uint8), atol=0, rtol=0)
    torch.testing.assert_close(shift_images(x, 'bright'), (255 - (255 - xf)*0.4).round().to(torch.uint8),
                               atol=0, rtol=0)
    with pytest.raises(ValueError, match='Unknown shift'): shift_images(x, 'rain')

def test_shift_images_blur_is_the_binomial_kernel():
    x = torch.zeros(1, 3, 15, 15, dtype=torch.uint8); x[..., 7, 7] = 255        # one bright pixel, far from the edges
    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])/256
    want = np.zeros((15, 15)); want[5:10, 5:10] = np.round(255*k)
    for c in range(3): np.testing.assert_array_equal(shift_images(x, 'blur')[0, c].numpy(), want)

def test_shift_images_lowres_loses_fine_detail():
    x = torch.zeros(1, 3, 30, 30, dtype=torch.uint8); x[..., ::2] = 255           # 1-pixel stripes
    y = shift_images(x, 'lowres').float()
    assert abs(y.mean().item() - x.float().mean().item()) < 15, (y.mean(), x.float().mean())
    assert y.std().item() < 0.5*x.float().std().item(), (y.std(), x.float().std())   # the stripes are mostly gone
    coarse = torch.zeros(1, 3, 30, 30, dtype=torch.uint8); coarse[..., 15:] = 200  # a coarse edge survives
    low = shift_images(coarse, 'lowres')
    assert (low[..., :, :12] == 0).all() and (low[..., :, 18:] == 200).all()

def test_shift_images_crop_zooms_in():
    ramp = (torch.arange(32)*8).to(torch.uint8).expand(1, 3, 32, 32).contiguous()  # pixel value = 8 * column
    y = shift_images(ramp, 'crop')
    c = round(32*0.2)                                           # 6 px cut left and top, 3 right and bottom
    assert (y[..., 0] == 8*c).all() and (y[..., -1] == 8*(32 - c//2 - 1)).all(), y[0, 0, 0, [0, -1]]

def test_make_signs():
    x, y, g = make_signs(12, 2, size=32, seed=7, classes=[3, 5])
    assert x.shape == (24, 3, 32, 32) and set(y.tolist()) == {3, 5} and g.max() == 11
    assert torch.equal(x, make_signs(12, 2, size=32, seed=7, classes=[3, 5])[0])
    assert not torch.equal(x, make_signs(12, 2, size=32, seed=8, classes=[3, 5])[0])
    for bad in (dict(classes=[len(SIGN_CLASSES)]), dict(classes=[]), dict(n_tracks=0)):
        with pytest.raises(ValueError): make_signs(**bad)

def test_augment_batch_identity_and_randomness():
    x = torch.randn(5, 3, 16, 16)
    torch.testing.assert_close(augment_batch(x, rot=0, zoom=0, shift=0, light=0, contrast=0), x, atol=1e-5, rtol=0)
    assert (augment_batch(x) - x).abs().mean() > 0.05

def test_predict_probs_train_mode_leaves_model_alone():
    m = sign_cnn()
    x = imagenet_norm(make_signs(4, 2, seed=1)[0])
    bn = [o for o in m.modules() if isinstance(o, nn.BatchNorm2d)][0]
    before = bn.running_mean.clone()
    m.train()
    p = predict_probs(m, x, train_mode=True)
    assert torch.equal(bn.running_mean, before) and m.training
    torch.testing.assert_close(p.sum(1), torch.ones(len(x)))
    m.eval(); q1, q2 = predict_probs(m, x), predict_probs(m, x)
    assert torch.equal(q1, q2) and not m.training

@pytest.mark.parametrize('shape,tile', [((1, 3, 32, 32), 16), ((2, 1, 64, 96), 32), ((3, 3, 30, 20), 10)])
def test_tile_image_matches_slicing(shape, tile):
    x = torch.randn(shape)
    t = tile_image(x, tile)
    n, c, h, w = shape; gw = w//tile
    assert t.shape == (n, (h//tile)*gw, c, tile, tile)
    for k in range(t.shape[1]):
        i, j = divmod(k, gw)
        assert torch.equal(t[:, k], x[:, :, i*tile:(i+1)*tile, j*tile:(j+1)*tile])

def test_tile_image_bad_tile():
    with pytest.raises(ValueError, match='must divide'): tile_image(torch.zeros(1, 3, 32, 32), 5)

def test_make_needles_cells():
    x, y, cell = make_needles(40, seed=1)
    assert x.shape == (40, 3, 96, 96) and ((cell >= 0) == (y == 1)).all() and cell.max() < 9
    assert 5 < int(y.sum()) < 35

@pytest.mark.parametrize('bg', [(90, 90, 90), (30, 120, 40), (200, 200, 160)])
def test_colour_family_cv2_on_clean_signs(bg):
    from PIL import Image, ImageDraw
    for k, c in enumerate(SIGN_CLASSES):
        im = Image.new('RGB', (32, 32), bg); draw_sign(ImageDraw.Draw(im), k, 16, 16, 10)
        assert colour_family_cv2(np.asarray(im)) == SIGN_FAMILY[c], c

def test_lab_cnn_matches_the_reports_summary():
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(lab_cnn(5, widths=(32, 64, 128, 128), size=150, hidden=512)) == 3_455_173       # basic network
    assert n(lab_cnn(5, widths=(32, 64, 128, 128), size=150, hidden=512, p=0.5)) == 3_455_173  # + dropout: same count
    with pytest.raises(ValueError, match='too small'): lab_cnn(size=20)


# --- training helpers: the dashboard's plots and seeded runs --------------------------------------------------------

def _tiny_dls(seed=0):
    x, y, _ = make_signs(16, 2, seed=seed)
    return tensor_dls(x[:24], y[:24], x[24:], y[24:], bs=8)

def test_plot_epochs_one_run_and_several_seeds():
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    dls = _tiny_dls()
    l0, l1 = train_cnn(dls, sign_cnn, epochs=2, seed=0), train_cnn(dls, sign_cnn, epochs=2, seed=1)
    try:
        axs = l0.dashboard.plot_epochs(title='run')                         # Dashboard.plot_epochs -> plot_epochs
        assert [ln.get_label() for ln in axs[0].lines] == ['run train', 'run valid']
        np.testing.assert_allclose(np.asarray(axs[1].lines[0].get_ydata(), float), l0.dashboard.avgs().trn_loss.values)
        axs = plot_epochs({'a': l0.dashboard, 'b': [l0.dashboard, l1.dashboard]})
        assert len(axs[0].lines) == 4 and len(axs[0].collections) == 2     # the two-seed run gets shaded ranges
        mean = (l0.dashboard.avgs().val_acc.values + l1.dashboard.avgs().val_acc.values)/2
        np.testing.assert_allclose(np.asarray(axs[0].lines[3].get_ydata(), float), mean)
        assert axs[0].lines[3].get_label() == 'b valid (mean of 2)'
    finally: plt.close('all')

def test_train_cnn_seed_fixes_the_run():
    dls = _tiny_dls()
    a1, a2 = (train_cnn(dls, sign_cnn, epochs=2, seed=3).dashboard.avgs() for _ in range(2))
    torch.manual_seed(123)                                                   # global state must not matter
    a3 = train_cnn(dls, sign_cnn, epochs=2, seed=3).dashboard.avgs()
    assert a1.equals(a2) and a1.equals(a3)
    assert not a1.equals(train_cnn(dls, sign_cnn, epochs=2, seed=4).dashboard.avgs())
    assert len(train_cnn(dls, sign_cnn(), epochs=1).dashboard.avgs()) == 1   # a model instance still works


def test_tensor_dls_normalises_with_imagenet_norm():
    x, y, _ = make_signs(16, 2, seed=0)
    dls = _tiny_dls()
    torch.testing.assert_close(dls.train.dataset.tensors[0], imagenet_norm(x[:24]), atol=0, rtol=0)
    torch.testing.assert_close(dls.valid.dataset.tensors[0], imagenet_norm(x[24:]), atol=0, rtol=0)
    assert torch.equal(dls.valid.dataset.tensors[1], y[24:])


# --- where the practical modules are written -------------------------------------------------------------------------

PARTS = {'signs': '50a_signs', 'dashboard': '50b_dashboard', 'cnn_training': '50c_cnn_training', 'splits': '50d_splits',
         'imbalance': '50e_imbalance', 'memory': '50f_memory', 'small_objects': '50g_small_objects',
         'opencv_baseline': '50h_opencv_baseline'}

def _export_directives(fn):
    "Every `#| default_exp` / `#| export...` directive of notebook `fn`, as `(directive, argument or None)`."
    import json
    out = []
    for c in json.loads(fn.read_text(encoding='utf-8'))['cells']:
        if c['cell_type'] != 'code': continue
        for line in ''.join(c['source']).splitlines():
            if not line.startswith('#|'): break
            d = line[2:].split()
            if d and d[0] in ('export', 'exports', 'exporti', 'default_exp'):
                out.append((d[0], d[1] if len(d) > 1 else None))
    return out

def test_each_practical_module_is_written_by_its_own_part():
    "Each module is written by its own part notebook; the lesson and its deep dive export nothing."
    from pathlib import Path
    root = Path(__file__).parent.parent
    for mod, part in PARTS.items():
        ds = _export_directives(root/'nbs'/f'{part}.ipynb')
        assert ('default_exp', mod) in ds, f'{part} should start with #| default_exp {mod}: {ds}'
        assert all(a is None for d, a in ds if d != 'default_exp'), f'{part} exports to another module: {ds}'
        assert [a for d, a in ds if d == 'default_exp'] == [mod], ds
        head = (root/'imgcls_course'/f'{mod}.py').read_text(encoding='utf-8')[:1000]
        assert f'File to edit: ../nbs/{part}.ipynb' in head, f'imgcls_course/{mod}.py is not written by {part}'
    for nb in ('50_practical', '51_practical_more'):
        assert _export_directives(root/'nbs'/f'{nb}.ipynb') == [], f'{nb} should import the parts and export nothing'
