("Tests for `imgcls_course.presizing`, `.images` and `.fidelity`: equivalence with fastai, resample counts, "
 "geometry of the benchmark, determinism, bad input.")
import hashlib, math, random, struct, zlib, warnings
from pathlib import Path
import numpy as np, pytest, torch, torch.nn.functional as F
from PIL import Image

warnings.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated', category=FutureWarning)
from fastai.torch_core import TensorImage, set_seed
from fastai.data.core import Pipeline
from fastai.vision.augment import Flip, Rotate, Zoom, Warp, RandomResizedCropGPU, setup_aug_tfms, aug_transforms
from imgcls_course.images import open_rgb, verify_images, ImageReadError, PILImageRGB
from imgcls_course.presizing import (
    count_calls, crop_box, presize_item, PresizeItem, draw_params, identity_params, flip_mat, rotate_mat, zoom_mat,
    crop_mat, warp_mat, presize_matrix, projective_grid, presize_batch, PresizeAug)
from imgcls_course.fidelity import (box_mat, render_reference, naive_augment, crop_subbox, psnr, fastai_augment,
    fastai_matrix, as_fastai_crop)

SEEDS = range(8)

def _fastai_affine(p):
    g = lambda k: p[k].float().tolist()
    return setup_aug_tfms([Flip(p=1., draw=g('flip')), Warp(p=1., draw_x=g('wx'), draw_y=g('wy')),
                           Rotate(p=1., draw=g('angle')),
                           Zoom(p=1., draw=g('zoom'), draw_x=g('zx'), draw_y=g('zy'))])[0]

def _nocrop(p):
    n = len(p['scale'])
    return {**p, 'scale': torch.ones(n), 'tx': torch.full((n,), .5), 'ty': torch.full((n,), .5)}

@pytest.mark.parametrize('seed', SEEDS)
def test_matches_fastai_affine_stack(seed):
    "Same parameters, square batch, no crop: our one grid_sample == fastai's composed Flip/Warp/Rotate/Zoom."
    torch.manual_seed(seed)
    x = torch.rand(5, 3, 48, 48)
    p = draw_params(5, p_affine=1., max_rotate=30, max_zoom=1.5, max_warp=0.3)
    ours = presize_batch(x, 48, _nocrop(p), ss=1, align_corners=True)
    theirs = _fastai_affine(p)(TensorImage(x), split_idx=0).as_subclass(torch.Tensor)
    assert (ours - theirs).abs().max() < 1e-4

def _apply(m, pts):
    ph = torch.cat([pts.double(), torch.ones(len(pts), 1, dtype=torch.float64)], 1) @ m.T
    return ph[:, :2]/ph[:, 2:]

@pytest.mark.parametrize('seed', SEEDS)
def test_composition_equals_sequential_maps(seed):
    "The composed matrix maps points exactly as the five matrices applied one after another."
    torch.manual_seed(seed)
    n, in_hw, out_hw = 4, (300, 460), (224, 160)
    p = draw_params(n, p_affine=1.)
    M = presize_matrix(p, in_hw, out_hw)
    steps = [warp_mat(p['wx'], p['wy']), flip_mat(p['flip']), rotate_mat(p['angle'], in_hw),
             zoom_mat(p['zoom'], p['zx'], p['zy']), crop_mat(p['scale'], p['tx'], p['ty'], in_hw, out_hw)]
    pts = torch.rand(100, 2)*2 - 1
    for i in range(n):
        q = pts
        for m in reversed(steps): q = _apply(m[i], q)
        assert torch.allclose(_apply(M[i], pts), q, atol=1e-9)
    # and the sampling grid is those points
    grid = projective_grid(M, out_hw)
    xs = (2*torch.arange(out_hw[1])+1)/out_hw[1] - 1; ys = (2*torch.arange(out_hw[0])+1)/out_hw[0] - 1
    j, k = 17, 101
    assert torch.allclose(grid[2, j, k].double(), _apply(M[2], torch.tensor([[xs[k], ys[j]]]))[0], atol=1e-6)

@pytest.mark.parametrize('hw,size', [((64, 96), 40), ((96, 64), 40), ((50, 50), 70), ((84, 120), (30, 45))])
def test_identity_is_centre_crop_resize(hw, size):
    torch.manual_seed(0)
    x = torch.rand(3, 3, *hw)
    H, W = hw; h, w = (size, size) if isinstance(size, int) else size
    x0, y0, x1, y1 = crop_box(W, H, size)
    assert x0 == int(x0) and y0 == int(y0) and x1 == int(x1) and y1 == int(y1)
    centre = x[..., int(y0):int(y1), int(x0):int(x1)]
    expect = F.interpolate(centre, size=(h, w), mode='bilinear', align_corners=False)
    assert (presize_batch(x, size, ss=1) - expect).abs().max() < 1e-5

@pytest.mark.parametrize('k', [2, 3, 4])
def test_supersampling_exact_reduction_is_area(k):
    x = torch.rand(2, 3, 24*k, 24*k)
    assert (presize_batch(x, 24, ss=k) - F.interpolate(x, size=(24, 24), mode='area')).abs().max() < 1e-5
    assert (presize_batch(x, 24) - F.interpolate(x, size=(24, 24), mode='area')).abs().max() < 1e-5   # auto ss = k

@pytest.mark.parametrize('w', [31, 32])
def test_flip_is_torch_flip(w):
    x = torch.rand(2, 3, 20, w)
    p = identity_params(2); p['flip'][:] = True
    assert (presize_batch(x, (20, w), p) - torch.flip(x, [-1])).abs().max() < 1e-5

def test_bad_batches():
    with pytest.raises(TypeError, match='float'): presize_batch(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match='batch'): presize_batch(torch.zeros(3, 8, 8))

# ---------------------------------------------------------------- how many times each pipeline resamples
def test_count_calls():
    x = TensorImage(torch.rand(1, 3, 8, 8))
    orig = F.interpolate
    with count_calls('interpolate', 'grid_sample') as n:
        F.interpolate(x, size=4); F.interpolate(x.as_subclass(torch.Tensor), size=2)
    assert n == {'interpolate': 2, 'grid_sample': 0}           # a fastai tensor counts once, not twice
    with pytest.raises(RuntimeError):
        with count_calls('interpolate'): raise RuntimeError
    assert F.interpolate is orig                                 # restored, even after an error

def test_resample_counts():
    "The book's picture: fastai's composed Rotate/Zoom/Warp, 460 -> 224 px, resamples twice; one at a time, five times."
    kw = dict(p=1., pad_mode='zeros')
    x = TensorImage(torch.rand(2, 3, 460, 460))
    with count_calls('interpolate', 'grid_sample') as one:
        Pipeline(setup_aug_tfms([Rotate(draw=30, size=224, **kw),
                                 Zoom(draw=1.2, draw_x=0.5, draw_y=0.5, size=224, **kw),
                                 Warp(draw_x=-0.2, draw_y=0.2, size=224, **kw)]))(x)
    with count_calls('interpolate', 'grid_sample') as seq:
        x.affine_coord(sz=224).rotate(draw=30, **kw).zoom(draw=1.2, draw_x=0.5, draw_y=0.5, **kw) \
            .warp(draw_x=-0.2, draw_y=0.2, **kw)
    with count_calls('interpolate', 'grid_sample') as ours:
        presize_batch(x.as_subclass(torch.Tensor), 224, draw_params(2))
    assert one == {'interpolate': 1, 'grid_sample': 1}
    assert seq == {'interpolate': 1, 'grid_sample': 4}
    assert ours == {'interpolate': 0, 'grid_sample': 1}

def test_book_batch_step_resamples_two_or_three_times():
    ("aug_transforms(size=224, min_scale=0.75) on 460 px items: the affine stack, then the crop; "
     "an area shrink first when the crop is above 448 px.")
    pipe = Pipeline(aug_transforms(size=224, min_scale=0.75), split_idx=0)
    crop = next(t for t in pipe.fs if isinstance(t, RandomResizedCropGPU))
    set_seed(0)
    seen = set()
    for _ in range(30):
        with count_calls('interpolate', 'grid_sample') as n: pipe(TensorImage(torch.rand(1, 1, 460, 460)))
        assert n == {'interpolate': int(min(crop.cp_size) > 448), 'grid_sample': 2}
        seen.add(n['interpolate'])
    assert seen == {0, 1}

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU')
def test_runs_on_gpu():
    x = torch.rand(4, 3, 64, 64)
    p = draw_params(4)
    y = presize_batch(x.cuda(), 32, p)
    assert y.device.type == 'cuda' and (y.cpu() - presize_batch(x, 32, p)).abs().max() < 1e-4

# ---------------------------------------------------------------- the benchmark's geometry
def _ramp(W0=451, H0=300):
    "A float image that is linear in x and y: bilinear sampling and box filters reproduce it exactly."
    yy, xx = np.mgrid[0:H0, 0:W0].astype(np.float32)
    return Image.fromarray(xx/W0, 'F'), Image.fromarray(yy/H0, 'F')

def _t(im): return torch.from_numpy(np.asarray(im, dtype=np.float32).copy())[None, None]

def _interior(out_ones):
    "Pixels untouched by padding (and away from the borders, where PIL's filter is truncated), as an (h,w) mask."
    m = (out_ones > 0.999).float()
    return (-F.max_pool2d(-m, 9, 1, 4) > 0.5).reshape(out_ones.shape[-2:])

def _err(out, ref, m): return (out.reshape(m.shape) - ref.reshape(m.shape))[m].abs().max()

@pytest.mark.parametrize('seed', range(3))
def test_benchmark_geometries(seed):
    ("On a linear ramp, each pipeline's output equals its reference rendered from the original: "
     "the geometry maps are right.")
    torch.manual_seed(seed)
    P, S = 230, 112
    p = as_fastai_crop(draw_params(1, p_affine=1.), P)
    for im in _ramp():
        W0, H0 = im.size
        orig = _t(im)[0]
        box = crop_box(W0, H0, P, (0.3, 0.5))
        big = _t(im.resize((P, P), Image.BILINEAR, box=box))
        ones = torch.ones(1, 1, P, P)
        # ours
        ref = render_reference(orig, box_mat(box, (W0, H0)) @ presize_matrix(p, (P, P), (S, S)), S,
                               ss=2, pad_mode='zeros')
        m = _interior(presize_batch(ones, S, p, pad_mode='zeros'))
        assert m.float().mean() > 0.3
        assert _err(presize_batch(big, S, p), ref, m) < 2e-3
        # fastai
        ref = render_reference(orig, box_mat(box, (W0, H0), P) @ fastai_matrix(p, 0, P), S, ss=2, grid_align=True)
        m = _interior(fastai_augment(ones, p, S, pad_mode='zeros'))
        assert _err(fastai_augment(big, p, S), ref, m) < 2e-3
        # naive
        sub = crop_subbox(box, p['scale'][0], p['tx'][0], p['ty'][0])
        small = _t(im.resize((S, S), Image.BILINEAR, box=sub))
        ref = render_reference(orig, box_mat(sub, (W0, H0)) @ presize_matrix(_nocrop(p), (S, S), (S, S)), S, ss=2)
        m = _interior(naive_augment(torch.ones(1, 1, S, S), p, pad_mode='zeros'))
        assert _err(naive_augment(small, p), ref, m) < 2e-3

def test_wrong_geometry_is_caught():
    "The reference check above can fail: a reference for a different crop gives a large error."
    torch.manual_seed(0)
    im = _ramp()[0]; W0, H0 = im.size; P, S = 230, 112
    p = draw_params(1, p_affine=1.); q = {**p, 'tx': 1-p['tx']}
    box = crop_box(W0, H0, P)
    big = _t(im.resize((P, P), Image.BILINEAR, box=box))
    ref = render_reference(_t(im)[0], box_mat(box, (W0, H0)) @ presize_matrix(q, (P, P), (S, S)), S, ss=2)
    assert (presize_batch(big, S, p) - ref).abs().max() > 0.02

def test_psnr():
    a = torch.rand(2, 3, 8, 8)
    assert torch.isinf(psnr(a, a)).all()
    assert torch.allclose(psnr(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5)),
                          torch.tensor([10*math.log10(4)]))

# ---------------------------------------------------------------- determinism, fastai integration
def test_presize_aug_determinism():
    aug, x = PresizeAug(32), TensorImage(torch.rand(6, 3, 64, 64))
    assert torch.equal(aug(x, split_idx=1), aug(x, split_idx=1))
    set_seed(3); a = [aug(x, split_idx=0) for _ in range(2)]
    set_seed(3); b = [aug(x, split_idx=0) for _ in range(2)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], a[1])

@pytest.fixture(scope='module')
def tiny_pets(tmp_path_factory):
    d = tmp_path_factory.mktemp('pets')
    rng = np.random.default_rng(0)
    for b in ('Abyssinian', 'beagle'):
        for i in range(1, 9):
            w, h = rng.integers(40, 120, 2)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d/f'{b}_{i}.jpg')
    Image.fromarray(np.full((50, 70), 40000, np.uint16)).save(d/'beagle_9.png')   # 16-bit file in the mix
    return d

# fastai.vision.all imports fastai.tabular, which sets a pandas option pandas 3 deprecates
@pytest.mark.filterwarnings("ignore:.*mode.chained_assignment.*")
def test_datablock_with_our_transforms(tiny_pets):
    from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, RandomSplitter, RegexLabeller, using_attr,
                                   get_image_files)
    db = DataBlock(blocks=(ImageBlock(cls=PILImageRGB), CategoryBlock), get_items=get_image_files,
                   splitter=RandomSplitter(0.25, seed=0),
                   get_y=using_attr(RegexLabeller(r'^(.+)_\d+\.(?:jpg|png)$'), 'name'),
                   item_tfms=PresizeItem(48), batch_tfms=PresizeAug(32))
    def run(seed):
        set_seed(seed, reproducible=True)
        dls = db.dataloaders(tiny_pets, bs=4, num_workers=0)
        return (dls, [torch.cat([b[0] for b in dls.train]) for _ in range(2)],
                [torch.cat([b[0] for b in dls.valid]) for _ in range(2)])
    dls, e1, v1 = run(5)
    _, e2, v2 = run(5)
    # validation: fixed
    assert v1[0].shape[1:] == (3, 32, 32) and torch.equal(v1[0], v1[1]) and torch.equal(v1[0], v2[0])
    assert torch.equal(e1[0], e2[0]) and torch.equal(e1[1], e2[1])            # training: repeats under a seed
    assert not torch.equal(e1[0], e1[1])                                      # and differs between epochs
    assert dls.vocab == ['Abyssinian', 'beagle']

# ---------------------------------------------------------------- bad input
def _png_with_size(fn, w, h):
    "A PNG whose header claims w x h (a decompression bomb as far as the header goes)."
    Image.new('L', (1, 1)).save(fn)
    b = bytearray(Path(fn).read_bytes())
    b[16:24] = struct.pack('>II', w, h)
    b[29:33] = struct.pack('>I', zlib.crc32(bytes(b[12:29])) & 0xffffffff)
    Path(fn).write_bytes(bytes(b))

@pytest.fixture(scope='module')
def bad_dir(tmp_path_factory):
    import cv2
    d = tmp_path_factory.mktemp('bad')
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)).save(d/'gray.jpg')
    Image.new('LA', (40, 30), (100, 255)).save(d/'gray_alpha.png')
    pal = Image.new('P', (40, 30), 1); pal.putpalette([0, 0, 0, 10, 200, 30] + [0]*762); pal.save(d/'palette.png')
    pt = pal.copy(); pt.info['transparency'] = 1; pt.save(d/'palette_transparent.png', transparency=1)
    a = np.zeros((30, 40, 4), np.uint8); a[..., 2] = 255; a[:, :20, 3] = 255; Image.fromarray(a).save(d/'rgba.png')
    Image.new('CMYK', (40, 30), (0, 255, 255, 0)).save(d/'cmyk.jpg')
    Image.fromarray(np.full((30, 40), 65535, np.uint16)).save(d/'gray16.png')
    Image.fromarray(np.full((30, 40), 200, np.uint16)).save(d/'dark16.png')
    cv2.imwrite(str(d/'rgb16.png'), np.dstack([np.full((30, 40), v, np.uint16) for v in (0, 32896, 65535)]))  # BGR
    Image.fromarray(np.full((30, 40), 0.5, np.float32), 'F').save(d/'float.tif')
    Image.new('RGB', (1, 1), (1, 2, 3)).save(d/'one_pixel.png')
    Image.new('RGB', (6000, 4000), (90, 60, 30)).save(d/'huge.jpg', quality=80)
    _png_with_size(d/'bomb.png', 20000, 20000)
    ok = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)); ok.save(d/'ok.jpg'); ok.save(d/'ok.png')
    (d/'truncated.jpg').write_bytes((d/'ok.jpg').read_bytes()[:600])
    (d/'truncated.png').write_bytes((d/'ok.png').read_bytes()[:300])
    (d/'empty.jpg').write_bytes(b'')
    (d/'text.jpg').write_text('hello')
    return d

GOOD = {'gray.jpg': None, 'gray_alpha.png': (100, 100, 100), 'palette.png': (10, 200, 30),
        'palette_transparent.png': (255, 255, 255), 'rgba.png': (0, 0, 255), 'cmyk.jpg': None,
        'gray16.png': (255, 255, 255), 'dark16.png': (1, 1, 1), 'rgb16.png': (255, 128, 0),
        'float.tif': (128, 128, 128),
        'one_pixel.png': (1, 2, 3), 'huge.jpg': None, 'ok.jpg': None, 'ok.png': None}
BAD = ['bomb.png', 'truncated.jpg', 'truncated.png', 'empty.jpg', 'text.jpg']

@pytest.mark.parametrize('name', list(GOOD))
def test_open_rgb_good(bad_dir, name):
    im = open_rgb(bad_dir/name)
    assert im.mode == 'RGB'
    if GOOD[name] is not None: assert im.getpixel((0, 0)) == GOOD[name]
    if name == 'cmyk.jpg': assert np.abs(np.asarray(im)[0, 0].astype(int) - [255, 0, 0]).max() <= 3
    if name == 'rgba.png': assert im.getpixel((39, 0)) == (255, 255, 255)   # transparent half -> background
    out = presize_item(im, 64, pcts=(random.random(), random.random()))
    assert out.size == (64, 64) and out.mode == 'RGB'
    x = torch.from_numpy(np.asarray(out).copy()).permute(2, 0, 1)[None].float()/255
    assert presize_batch(x, 32, draw_params(1)).shape == (1, 3, 32, 32)

@pytest.mark.parametrize('name', BAD)
def test_open_rgb_bad_names_the_file(bad_dir, name):
    with pytest.raises(ImageReadError, match=name.replace('.', r'\.')):
        open_rgb(bad_dir/name)

def test_max_pixels(bad_dir):
    with pytest.raises(ImageReadError, match=r'huge\.jpg.*max_pixels'): open_rgb(bad_dir/'huge.jpg', max_pixels=10**6)

def _state(d):
    return {f.name: (hashlib.md5(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in sorted(d.iterdir())}

def test_verify_images_reports_and_touches_nothing(bad_dir):
    before = _state(bad_dir)
    good, bad = verify_images(sorted(bad_dir.iterdir()))
    assert sorted(f.name for f in good) == sorted(GOOD)
    assert sorted(f.name for f, _ in bad) == sorted(BAD)
    assert all(isinstance(r, str) and not r.startswith(str(f)) and len(r) > 10 for f, r in bad)   # a reason
    assert _state(bad_dir) == before

def test_pilimagergb(bad_dir):
    im = PILImageRGB.create(bad_dir/'gray16.png')
    assert im.mode == 'RGB' and im.getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageReadError, match='text.jpg'): PILImageRGB.create(bad_dir/'text.jpg')
