("Grad-CAM (`gradcam`): equal to pytorch-grad-cam (Grad-CAM, HiResCAM, LayerCAM, Grad-CAM++, contrastive targets, "
 "a ViT through reshape_transform), batch invariance, no leaks, CAM equivalence, bad inputs, overlay colours; "
 "its evaluation (`cam_eval`): localisation metrics, where a cell sits, deletion scores.")
import ast, gc, inspect, warnings
import numpy as np, pytest, torch, torch.nn as nn
from torch.testing import assert_close
from PIL import Image, ImageDraw
from torchvision.models import resnet18
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric, RemoveMostRelevantFirst,
                                                               RemoveLeastRelevantFirst, AveragerAcrossThresholds)
from imgcls_course.models import efficientnet_lite0, imagenet_tensor
import imgcls_course.gradcam, imgcls_course.cam_eval
from imgcls_course.gradcam import (grad_cam, normalize_cam, overlay, last_spatial_layer, class_activation_map, Hook,
                                   centre_crop)
from imgcls_course.cam_eval import (cam_box, box_iou, pointing_hit, energy_ratio, localisation_scores,
                                    localisation_per_image, pets_localisation, box_in_crop, deletion_score, random_map)


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    r = resnet18(weights=None).eval()
    l = efficientnet_lite0().eval()
    return {'resnet18': (r, r.layer4[-1]), 'lite0': (l, l.bn2), 'lite0-mid': (l, l.blocks[4])}

def _x(seed, bs, h=64, w=64):
    return torch.randn(bs, 3, h, w, generator=torch.Generator().manual_seed(seed))

def _ref(model, layer, x, targets):
    with warnings.catch_warnings(), GradCAM(model, [layer]) as cam:
        warnings.simplefilter('ignore')
        return cam(x, None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets])

@pytest.mark.parametrize('name', ['resnet18', 'lite0', 'lite0-mid'])
@pytest.mark.parametrize('bs', [1, 4])
@pytest.mark.parametrize('seed', [0, 1])
def test_equal_to_pytorch_grad_cam(models, name, bs, seed):
    model, layer = models[name]
    x = _x(seed, bs, 64, 96 if seed else 64)                      # a non-square input too
    t = torch.randint(0, 1000, (bs,), generator=torch.Generator().manual_seed(100+seed))
    for targets in (None, t):
        ours = grad_cam(model, x, targets, layer=layer)
        ref = _ref(model, layer, x, targets)
        assert ours.shape == ref.shape == (bs, *x.shape[-2:])
        assert_close(ours, torch.from_numpy(ref), rtol=0, atol=1e-4)

@pytest.mark.parametrize('name', ['resnet18', 'lite0'])
def test_batched_equals_per_image(models, name):
    model, layer = models[name]
    x = _x(3, 4); t = [1, 500, 999, 7]
    batched = grad_cam(model, x, t, layer=layer)
    single = torch.cat([grad_cam(model, x[i:i+1], t[i], layer=layer) for i in range(4)])
    assert_close(batched, single, rtol=0, atol=1e-5)
    # an int target is used for every image; None is the per-image argmax
    assert_close(grad_cam(model, x, 5, layer=layer), grad_cam(model, x, [5]*4, layer=layer), rtol=1e-5, atol=1e-8)
    with torch.no_grad(): pred = model(x).argmax(1)
    assert_close(grad_cam(model, x, None, layer=layer), grad_cam(model, x, pred, layer=layer), rtol=1e-5, atol=1e-8)

def test_none_is_each_images_own_argmax(models):
    "On photos of different things (noise gets one class for all), `targets=None` explains each image's own top class."
    from imgcls_course.data import real_photo
    model, layer = models['lite0']
    x = torch.cat([imagenet_tensor(real_photo(n), 128) for n in ('chelsea', 'coffee', 'flower')])
    with torch.no_grad(): pred = model(x).argmax(1)
    assert len(set(pred.tolist())) == 3, pred
    none = grad_cam(model, x, None, layer=layer)
    assert_close(none, grad_cam(model, x, pred, layer=layer), rtol=1e-5, atol=1e-8)
    first = grad_cam(model, x, int(pred[0]), layer=layer)           # the wrong rule: the first image's class for all
    assert (none[1:] - first[1:]).abs().max() > 0.1

def test_different_classes_give_different_maps(models):
    model, layer = models['lite0']
    x = _x(4, 1, 128, 128)
    d = (grad_cam(model, x, 1, layer=layer) - grad_cam(model, x, 900, layer=layer)).abs().max().item()
    assert d > 0.1, d                                              # measured 1.00 on inputs of seeds 0-5

def _rss_mb():
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * 4096 / 2**20

def _n_hooks(model):
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

def _small_cnn(seed=0, n_classes=10):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, n_classes)).eval()

def _n_tensors():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())

def test_200_calls_no_hooks_no_growth():
    model = _small_cnn()
    x = _x(5, 4, 32, 32)
    for i in range(20): grad_cam(model, x, i % 10)                 # warm up allocator and caches
    gc.collect(); rss0 = _rss_mb(); n0 = _n_tensors()
    for i in range(200): grad_cam(model, x, i % 10, layer=model[1] if i % 2 else None)
    gc.collect(); rss1 = _rss_mb(); n1 = _n_tensors()
    assert _n_hooks(model) == 0
    assert n1 <= n0, (n0, n1)                                        # no tensor kept alive by the calls
    assert rss1 - rss0 < 20, (rss0, rss1)                            # MB
    assert all(p.grad is None for p in model.parameters())

def test_state_restored_frozen_and_inplace():
    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=10)
    model.train(); model.layer1.eval()
    flags = [m.training for m in model.modules()]
    x = _x(6, 3, 64, 64)
    c = grad_cam(model, x, [1, 2, 3], layer=model.layer4[-1].bn2)  # output modified in place by `out += identity`
    assert [m.training for m in model.modules()] == flags
    for p in model.parameters(): p.requires_grad_(False)
    assert_close(grad_cam(model, x, [1, 2, 3], layer=model.layer4[-1].bn2), c, rtol=1e-5, atol=1e-6)
    # in-place ReLU right after the layer gives the same maps as an out-of-place one
    torch.manual_seed(1)
    def net(inplace):
        torch.manual_seed(1)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace), nn.Conv2d(8, 16, 3, padding=1),
                             nn.ReLU(inplace), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    a, b = net(True), net(False)
    ca, cb = grad_cam(a, x, [0, 1, 2], layer=a[2]), grad_cam(b, x, [0, 1, 2], layer=b[2])
    assert_close(ca, cb, rtol=1e-5, atol=1e-6)
    assert ca.max() > 0.99, ca.max()

def test_hook_removed_on_exception():
    lin = nn.Linear(2, 2)
    with pytest.raises(ZeroDivisionError):
        with Hook(lin): 1/0
    assert len(lin._forward_hooks) == 0

def test_bad_inputs(models):
    model, layer = models['lite0']
    x = _x(7, 2)
    with pytest.raises(ValueError, match='not a spatial map'): grad_cam(model, x, layer=model.global_pool)
    with pytest.raises(ValueError, match='not a spatial map'): grad_cam(model, x, layer=model.classifier)
    with pytest.raises(IndexError, match='out of range.*1000 classes'): grad_cam(model, x, 1000)
    with pytest.raises(IndexError, match='out of range'): grad_cam(model, x, [-1, 3])
    with pytest.raises(ValueError, match='one per image'): grad_cam(model, x, [1, 2, 3])
    with pytest.raises(ValueError, match='grayscale'): grad_cam(model, x[:, :1])
    with pytest.raises(ValueError, match='batch dimension'): grad_cam(model, x[0])
    with pytest.raises(RuntimeError, match='no_grad'):
        with torch.no_grad(): grad_cam(model, x)
    with pytest.raises(RuntimeError, match='inference_mode'):
        with torch.inference_mode(): grad_cam(model, x)
    assert _n_hooks(model) == 0

@pytest.mark.parametrize('seed', range(5))
def test_cam_equals_grad_cam_for_gap_linear(seed):
    "The Grad-CAM paper's proof, by test: conv -> GAP -> linear, alpha_k = w_k/Z."
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5)).eval()
    x = _x(seed, 3, 32, 40); t = torch.randint(0, 5, (3,))
    with torch.no_grad(), Hook(model[3]) as h: model(x); act = h.stored
    cam = normalize_cam(class_activation_map(act, model[-1].weight, t), x.shape[-2:])
    assert_close(grad_cam(model, x, t, layer=model[3]), cam, rtol=0, atol=1e-5)
    # not a tautology: at an earlier layer the maps differ (measured 0.99-1.00 for seeds 0-9)
    d = (grad_cam(model, x, t, layer=model[1]) - cam).abs().max().item()
    assert d > 0.1, d

def test_auto_layer(models):
    assert last_spatial_layer(models['resnet18'][0], _x(0, 1))[0] == 'layer4'
    assert last_spatial_layer(models['lite0'][0], _x(0, 1))[0] == 'bn2'
    model, layer = models['lite0']
    x = _x(8, 2)
    assert_close(grad_cam(model, x), grad_cam(model, x, layer=layer), rtol=1e-5, atol=1e-8)

def test_overlay_colours_match_reference():
    mask = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (16, 1))
    ours = overlay(np.zeros((16, 64, 3), np.uint8), mask, alpha=1.0)
    ref = show_cam_on_image(np.zeros((16, 64, 3), np.float32), mask, use_rgb=True, image_weight=0.0)
    np.testing.assert_allclose(ours.astype(int), ref.astype(int), rtol=0, atol=1)
    assert ours[0, -1, 0] > 100 and ours[0, -1, 2] < 30, ours[0, -1]   # hot is red in RGB
    assert ours[0, 0, 2] > 100 and ours[0, 0, 0] < 30, ours[0, 0]      # cold is blue
    img = np.random.default_rng(0).integers(0, 256, (16, 64, 3)).astype(np.uint8)
    np.testing.assert_array_equal(overlay(img, mask, alpha=0.0), img)
    half = overlay(img, mask, alpha=0.5).astype(int)
    np.testing.assert_allclose(half, (img.astype(int) + ours.astype(int))/2, rtol=0, atol=1)
    with pytest.raises(ValueError): overlay(img, mask, alpha=2)
    with pytest.raises(ValueError): overlay(img.astype(np.float32), mask)    # float > 1

@pytest.mark.parametrize('seed', range(5))
def test_cam_box_matches_skimage(seed):
    from skimage.measure import label, regionprops
    rng = np.random.default_rng(seed)
    cam = normalize_cam(torch.from_numpy(rng.random((1, 6, 6)).astype(np.float32)), (48, 48))[0].numpy()
    binary = cam >= 0.15*cam.max()
    regs = regionprops(label(binary, connectivity=2))
    r = max(regs, key=lambda r: r.area)
    y0, x0, y1, x1 = r.bbox
    # skimage's label orders regions by first pixel, as cv2 does, so ties resolve the same way
    assert cam_box(cam) == (x0, y0, x1, y1)

@pytest.mark.parametrize('seed', range(3))
def test_box_iou_matches_torchvision(seed):
    from torchvision.ops import box_iou as tv_iou
    rng = np.random.default_rng(seed)
    b = np.sort(rng.uniform(0, 100, (8, 2, 2)), axis=1).transpose(0, 2, 1).reshape(8, 4)[:, [0, 2, 1, 3]]
    ref = tv_iou(torch.tensor(b), torch.tensor(b)).numpy()
    ours = np.array([[box_iou(p, q) for q in b] for p in b])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)

def test_localisation_scores_perfect_and_blind():
    h = w = 32; box = (8, 8, 24, 24)
    inside = np.zeros((h, w), np.float32); inside[8:24, 8:24] = 1; inside[16, 16] = 2
    s = localisation_scores(np.stack([inside]*3), [box]*3)
    assert s['pointing game %'] == 100, s
    assert s['box loc. error %'] == 0, s
    assert s['energy ratio'] == pytest.approx(1/(16*16/1024))        # all the mass in a box of 256 of 1024 pixels
    outside = np.zeros((h, w), np.float32); outside[:4, :4] = 1
    s = localisation_scores(np.stack([outside]*2), [box]*2, correct=[True, True])
    assert s['pointing game %'] == 0, s
    assert s['box loc. error %'] == 100, s
    assert s['energy ratio'] == 0, s
    assert not pointing_hit(outside, box)
    assert energy_ratio(np.ones((h, w)), box) == pytest.approx(1)

def test_localisation_per_image_matches_scores():
    rng = np.random.default_rng(0)
    cams = normalize_cam(torch.from_numpy(rng.random((20, 4, 4)).astype(np.float32)), (32, 32)).numpy()
    boxes = [tuple(float(v) for v in np.sort(rng.uniform(0, 32, (2, 2)), 0).T.reshape(-1)[[0, 2, 1, 3]])
             for _ in range(20)]
    correct = rng.random(20) < 0.7
    per, s = localisation_per_image(cams, boxes), localisation_scores(cams, boxes, correct)
    assert s['pointing game %'] == pytest.approx(100*per['hit'].mean())
    assert s['energy ratio'] == pytest.approx(per['energy'].mean())
    assert s['box loc. error %'] == pytest.approx(100*(1-per['box_ok'].mean()))
    assert s['top-1 loc. error %'] == pytest.approx(100*(1-(per['box_ok'] & correct).mean()))
    assert [pointing_hit(c, b) for c, b in zip(cams, boxes)] == per['hit'].tolist()

def test_pets_localisation_on_a_small_model():
    "Crops, boxes, predictions and maps of `pets_localisation`, on a small untrained CNN and six synthetic pets."
    from types import SimpleNamespace
    from imgcls_course.data import pets_path, load_boxes
    from PIL import Image
    path = pets_path(); boxes = load_boxes(path)
    files = sorted((path/'images').glob('*.jpg'))[:6]
    vocab = sorted({f.name.rsplit('_', 1)[0] for f in files})
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=4, padding=1), nn.BatchNorm2d(16))
    model = nn.Sequential(body, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, len(vocab)))).eval()
    learn = SimpleNamespace(model=model, dls=SimpleNamespace(valid=SimpleNamespace(items=files), vocab=vocab))
    r = pets_localisation(learn, boxes, size=64, bs=4)
    assert r['cams'].shape == (6, 64, 64) and r['x'].shape == (6, 3, 64, 64)
    assert [vocab[int(i)] for i in r['y']] == [f.name.rsplit('_', 1)[0] for f in files]
    for f, im, b, x in zip(files, r['images'], r['boxes'], r['x']):
        crop, cr = centre_crop(Image.open(f), 64)
        np.testing.assert_array_equal(np.asarray(im), np.asarray(crop))   # the picture shown is the crop
        assert b == box_in_crop(boxes[f.name], cr, 64), (b, boxes[f.name], cr)
        assert all(0 <= v <= 64 for v in b), b
        # the model gets imagenet_tensor's input
        assert_close(x, imagenet_tensor(Image.open(f), 64)[0], rtol=0, atol=1e-6)
    with torch.no_grad(): assert torch.equal(r['pred'], model(r['x']).argmax(1))
    # last spatial layer: the body's bn
    assert_close(r['cams'], grad_cam(model, r['x'], r['y'], layer=body[-1]), rtol=0, atol=1e-5)
    r2 = pets_localisation(learn, boxes, size=64, bs=4, method='layercam')
    assert_close(r2['cams'], grad_cam(model, r['x'], r['y'], layer=body[-1], method='layercam'), rtol=0, atol=1e-5)
    assert (r2['cams'] - r['cams']).abs().max() > 1e-3                # the method reaches the maps
    r3 = pets_localisation(learn, boxes, size=64, bs=4, align=True)   # each cell at its receptive field's centre
    assert_close(r3['cams'], aligned_cam(model, r['x'], r['y'], layer=body[-1]), rtol=0, atol=1e-5)
    assert (r3['cams'] - r['cams']).abs().max() > 1e-3

@pytest.mark.parametrize('W,H,size,box', [(300, 200, 100, (80, 20, 140, 180)), (173, 251, 64, (10, 60, 150, 200)),
                                          (251, 173, 128, (0, 0, 120, 90)), (200, 300, 50, (20, 10, 180, 290))])
def test_box_in_crop_follows_the_pixels(W, H, size, box):
    ("A white box drawn on the photo lands where `box_in_crop` says, after `centre_crop` "
     "(within a pixel: bilinear edges).")
    img = Image.new('L', (W, H)); ImageDraw.Draw(img).rectangle([box[0], box[1], box[2]-1, box[3]-1], fill=255)
    crop, cr = centre_crop(img, size)
    white = np.asarray(crop)[..., 0] >= 128
    ys, xs = np.nonzero(white)
    seen = torch.tensor([xs.min(), ys.min(), xs.max()+1, ys.max()+1], dtype=torch.float64)
    assert_close(seen, torch.tensor(box_in_crop(box, cr, size), dtype=torch.float64), rtol=0, atol=1.0)

def test_centre_crop_is_what_imagenet_tensor_feeds():
    "`centre_crop`'s pixels, normalised, are `imagenet_tensor`'s input (odd and even margins, landscape and portrait)."
    rng = np.random.default_rng(0)
    for W, H in [(301, 200), (200, 301), (256, 255), (97, 97)]:
        img = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        crop, _ = centre_crop(img, 56)
        ours = imagenet_tensor(crop, 56)                               # already 56 x 56: normalised only
        assert_close(ours, imagenet_tensor(img, 56), rtol=0, atol=1e-6)
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        ref = (np.asarray(crop)/255 - mean)/std                        # the ImageNet normalisation, by hand
        assert_close(ours[0], torch.from_numpy(ref).permute(2, 0, 1).float(), rtol=0, atol=1e-5)

@pytest.mark.parametrize('mod', [imgcls_course.gradcam, imgcls_course.cam_eval])
def test_no_warning_filter_at_import(mod):
    ("No module-level call of `warnings` in gradcam or cam_eval: importing it changes no warning filter "
     "(silence locally instead).")
    tree = ast.parse(open(mod.__file__).read())
    calls = [ast.unparse(n.value.func) for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert not [c for c in calls if c.startswith('warnings.')], calls

def test_the_method_does_not_depend_on_its_evaluation():
    ("`gradcam` (the method) imports nothing from `cam_eval` (its evaluation), and `grad_cam` has no `align=`: "
     "aligned maps are `cam_eval.aligned_cam`.")
    tree = ast.parse(open(imgcls_course.gradcam.__file__).read())
    mods = [n.module or '' for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
           [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in mods if 'cam_eval' in m], mods
    assert 'align' not in inspect.signature(grad_cam).parameters
    assert not hasattr(imgcls_course.gradcam, 'cell_grid') and not hasattr(imgcls_course.gradcam, 'pets_localisation')


# --- contrastive maps, more methods, transformers (issue 14, items 2, 3, 5)
from pytorch_grad_cam import HiResCAM, LayerCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform
from imgcls_course.gradcam import CAM_METHODS, tokens_to_map

REF_CAMS = {'gradcam': GradCAM, 'hirescam': HiResCAM, 'layercam': LayerCAM, 'gradcam++': GradCAMPlusPlus}

def _ref_any(Ref, model, layer, x, targets, reshape_transform=None):
    "pytorch-grad-cam's class `Ref`; `targets` are class indices or callables on one image's output row."
    tg = [t if callable(t) else ClassifierOutputTarget(int(t)) for t in targets]
    with warnings.catch_warnings(), Ref(model, [layer], reshape_transform=reshape_transform) as cam:
        warnings.simplefilter('ignore')
        return torch.from_numpy(cam(x, tg))

def test_methods_are_the_references():
    assert set(CAM_METHODS) == set(REF_CAMS)

@pytest.mark.parametrize('method', list(REF_CAMS))
@pytest.mark.parametrize('name', ['resnet18', 'lite0', 'lite0-mid'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_methods_equal_pytorch_grad_cam(models, method, name, seed):
    "Each `method=` equals pytorch-grad-cam's class of that name on the same layer, inputs and targets."
    model, layer = models[name]
    x = _x(10+seed, 3, 64, 96 if seed == 1 else 64)
    t = torch.randint(0, 1000, (3,), generator=torch.Generator().manual_seed(200+seed)).tolist()
    ours = grad_cam(model, x, t, layer=layer, method=method)
    ref = _ref_any(REF_CAMS[method], model, layer, x, t)
    assert ours.shape == ref.shape == (3, *x.shape[-2:])
    assert_close(ours, ref, rtol=0, atol=1e-4)                     # measured <= 2e-6 on these inputs

@pytest.mark.parametrize('method', list(REF_CAMS))
@pytest.mark.parametrize('name', ['resnet18', 'lite0', 'lite0-mid'])
@pytest.mark.parametrize('seed', [0, 1])
def test_contrast_equals_reference_callable_target(models, method, name, seed):
    "`contrast=k` explains y_c - y_k: the reference with the callable target `lambda out: out[c] - out[k]`."
    model, layer = models[name]
    x = _x(20+seed, 3)
    g = torch.Generator().manual_seed(300+seed)
    c, k = torch.randint(0, 1000, (3,), generator=g).tolist(), torch.randint(0, 1000, (3,), generator=g).tolist()
    ours = grad_cam(model, x, c, layer=layer, contrast=k, method=method)
    ref = _ref_any(REF_CAMS[method], model, layer, x, [lambda o, a=a, b=b: o[a] - o[b] for a, b in zip(c, k)])
    assert_close(ours, ref, rtol=0, atol=1e-4)
    # at 64 px resnet18's map is 2x2: too coarse to differ
    if method == 'gradcam' and name != 'resnet18':
        plain = grad_cam(model, x, c, layer=layer)
        assert (ours - plain).abs().max() > 0.1, (ours - plain).abs().max()   # the contrast is another question

def test_contrast_forms(models):
    "An int contrast is used for every image, None for the target is the predicted class; c - c has nothing to show."
    model, layer = models['lite0']
    x = _x(30, 3)
    assert_close(grad_cam(model, x, [1, 2, 3], layer=layer, contrast=7),
                 grad_cam(model, x, [1, 2, 3], layer=layer, contrast=[7, 7, 7]), rtol=1e-5, atol=1e-7)
    with torch.no_grad(): pred = model(x).argmax(1)
    assert_close(grad_cam(model, x, None, layer=layer, contrast=5), grad_cam(model, x, pred, layer=layer, contrast=5),
                 rtol=1e-5, atol=1e-7)
    assert grad_cam(model, x, 4, layer=layer, contrast=4).abs().max() == 0    # zero gradient: zeros, not NaN
    with pytest.raises(IndexError, match='out of range'): grad_cam(model, x, 1, layer=layer, contrast=1000)
    with pytest.raises(ValueError, match='one per image'): grad_cam(model, x, 1, layer=layer, contrast=[1, 2])
    with pytest.raises(ValueError, match='Unknown method'): grad_cam(model, x, method='gradcampp')
    assert _n_hooks(model) == 0

def test_hirescam_is_gradcam_for_gap_linear():
    "For conv -> GAP -> linear the gradient is the same everywhere, so HiResCAM = Grad-CAM; not at an earlier layer."
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)).eval()
    x = _x(31, 2, 32, 32)
    assert_close(grad_cam(model, x, [1, 2], layer=model[3], method='hirescam'),
                 grad_cam(model, x, [1, 2], layer=model[3]), rtol=0, atol=1e-5)
    d = (grad_cam(model, x, [1, 2], layer=model[1], method='hirescam')
         - grad_cam(model, x, [1, 2], layer=model[1])).abs().max()
    assert d > 0.05, d

@pytest.fixture(scope='module')
def vit():
    import timm
    torch.manual_seed(0)
    return timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=64, num_classes=10).eval()

def test_tokens_to_map_equals_reference():
    t = torch.randn(2, 1+16, 8)
    assert torch.equal(tokens_to_map(t), vit_reshape_transform(t, 4, 4))
    assert torch.equal(tokens_to_map(t[:, :, :], hw=(2, 8)), vit_reshape_transform(t, 2, 8))
    with pytest.raises(ValueError, match='square'): tokens_to_map(t[:, :-1])
    with pytest.raises(ValueError, match=r'\(N,T,C\)'): tokens_to_map(t[0])

def test_vit_never_a_silent_map(vit):
    "On a ViT the automatic layer would be a patch embedding or an attention tensor: an error says what to pass."
    x = _x(40, 2)
    with pytest.raises(ValueError, match='transformer.*reshape_transform'): last_spatial_layer(vit, x)
    with pytest.raises(ValueError, match='reshape_transform'): grad_cam(vit, x)
    with pytest.raises(ValueError, match='tokens.*reshape_transform'): grad_cam(vit, x, layer=vit.blocks[-1].norm1)
    with pytest.raises(ValueError, match='pass the layer'): grad_cam(vit, x, reshape_transform=tokens_to_map)
    assert _n_hooks(vit) == 0
    # CNNs are not affected: their last spatial layer is still found
    assert last_spatial_layer(_small_cnn(), _x(0, 1, 16, 16))[0] == '4'   # its last ReLU

@pytest.mark.parametrize('method', list(REF_CAMS))
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_vit_reshape_transform_equals_reference(vit, method, seed):
    "A tiny timm ViT, tokens laid on their 4x4 grid: equal to pytorch-grad-cam with its `vit_reshape_transform`."
    x = _x(50+seed, 3)
    t = torch.randint(0, 10, (3,), generator=torch.Generator().manual_seed(400+seed)).tolist()
    layer = vit.blocks[-1].norm1
    ours = grad_cam(vit, x, t, layer=layer, method=method, reshape_transform=tokens_to_map)
    ref = _ref_any(REF_CAMS[method], vit, layer, x, t, reshape_transform=lambda a: vit_reshape_transform(a, 4, 4))
    assert ours.shape == (3, 64, 64)
    assert_close(ours, ref, rtol=0, atol=1e-4)
    con = grad_cam(vit, x, t, layer=layer, method=method, reshape_transform=tokens_to_map,
                   contrast=[(c+1) % 10 for c in t])
    ref_con = _ref_any(REF_CAMS[method], vit, layer, x, [lambda o, a=a: o[a] - o[(a+1) % 10] for a in t],
                       reshape_transform=lambda a: vit_reshape_transform(a, 4, 4))
    assert_close(con, ref_con, rtol=0, atol=1e-4)
    # a wrong reshape (the grid transposed: rows for columns) is caught by the same comparison
    wrong = grad_cam(vit, x, t, layer=layer, method=method,
                     reshape_transform=lambda a: tokens_to_map(a).transpose(2, 3))
    assert (wrong - ref).abs().max() > 1e-2, (wrong - ref).abs().max()

@pytest.fixture(scope='module')
def swin():
    import timm
    torch.manual_seed(0)
    return timm.create_model('swin_tiny_patch4_window7_224', pretrained=False, num_classes=5, img_size=112,
                             window_size=7, embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)).eval()

def _nhwc_to_nchw(t): return t.permute(0, 3, 1, 2)

@pytest.mark.parametrize('method', ['gradcam', 'layercam'])
def test_swin_channels_last(swin, method):
    ("A tiny Swin (random weights): channels-last outputs get an error naming the permute; "
     "with it, equal to the reference.")
    x = _x(60, 2, 112, 112)
    with pytest.raises(ValueError, match=r'channels last.*permute'): last_spatial_layer(swin, x)
    with pytest.raises(ValueError, match=r'channels last.*permute'): grad_cam(swin, x)
    with pytest.raises(ValueError, match=r'channels last.*permute'): grad_cam(swin, x, layer=swin.norm)
    ours = grad_cam(swin, x, [1, 3], layer=swin.norm, method=method, reshape_transform=_nhwc_to_nchw)
    ref = _ref_any(REF_CAMS[method], swin, swin.norm, x, [1, 3], reshape_transform=_nhwc_to_nchw)
    assert_close(ours, ref, rtol=0, atol=1e-4)
    assert _n_hooks(swin) == 0

def test_convnext_layernorm2d_is_not_channels_last():
    "timm's LayerNorm2d (a LayerNorm subclass over the channel axis of an NCHW map) is not mistaken for channels last."
    import timm
    torch.manual_seed(0)
    cn = timm.create_model('convnext_atto', pretrained=False, num_classes=5).eval()
    name, layer = last_spatial_layer(cn, _x(61, 1))
    assert name == 'norm_pre', name
    assert grad_cam(cn, _x(61, 2), [0, 1], method='hirescam').shape == (2, 64, 64)


def _mean_imputer(img, mask): return img * mask    # removed pixels -> 0, the normalised mean colour

@pytest.mark.parametrize('name', ['resnet18', 'lite0'])
@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('most_relevant_first', [True, False])
def test_deletion_score_equals_pytorch_grad_cam(models, name, seed, most_relevant_first):
    "MoRF / LeRF with a mean (zero) imputer, averaged over percentiles: the reference's metric classes, deterministic."
    model, layer = models[name]
    x = _x(200+seed, 3, 64, 64)
    t = torch.randint(0, 1000, (3,), generator=torch.Generator().manual_seed(300+seed))
    Remove = RemoveMostRelevantFirst if most_relevant_first else RemoveLeastRelevantFirst
    maps = {'grad-cam': grad_cam(model, x, t, layer=layer),
            'random': torch.from_numpy(np.stack([random_map(64, 64, 4, seed=10*seed+i) for i in range(3)]))}
    for kind, cams in maps.items():
        for pcts in ([50], [10, 30, 70, 90]):
            ref = AveragerAcrossThresholds(lambda p: PerturbationConfidenceMetric(Remove(p, _mean_imputer)), pcts)(
                x, cams.numpy(), [ClassifierOutputTarget(int(k)) for k in t], model)
            ours = deletion_score(model, x, cams, t, pcts, most_relevant_first)
            assert_close(ours, torch.from_numpy(ref), rtol=1e-4, atol=1e-4, msg=lambda m: f"{name} {kind} {pcts}: {m}")

@pytest.mark.parametrize('seed', [0, 1])
def test_half_lerf_minus_morf_is_road_combined(models, seed):
    ("(LeRF - MoRF)/2 of `deletion_score` is pytorch-grad-cam's `ROADCombined`, "
     "with its noisy linear imputer swapped for the mean colour.")
    from unittest import mock
    import pytorch_grad_cam.metrics.road as road
    class MeanImputer:
        def __call__(self, img, mask): return img * mask
    model, layer = models['lite0']
    x = _x(210+seed, 2, 64, 64); t = [3, 7]
    cams = grad_cam(model, x, t, layer=layer)
    with mock.patch.object(road, 'NoisyLinearImputer', MeanImputer):
        ref = road.ROADCombined(percentiles=[20, 50, 80])(
            x, cams.numpy(), [ClassifierOutputTarget(k) for k in t], model)
    ours = (deletion_score(model, x, cams, t, (20, 50, 80), False)
            - deletion_score(model, x, cams, t, (20, 50, 80), True))/2
    assert_close(ours, torch.from_numpy(np.asarray(ref, dtype=np.float32)), rtol=1e-4, atol=1e-4)

def test_deletion_score_removes_the_right_pixels():
    ("A linear model that reads only the right half: MoRF along a left-to-right ramp removes all of its score, "
     "LeRF none.")
    ramp = torch.linspace(0, 1, 16).repeat(16, 1)[None].expand(2, 16, 16)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3*16*16, 2)).eval()
    with torch.no_grad():
        lin[1].weight.zero_(); lin[1].bias.fill_(1.); lin[1].weight[0].view(3, 16, 16)[:, :, 8:] = 1.
    x = torch.ones(2, 3, 16, 16)
    assert_close(deletion_score(lin, x, ramp, 0, [50]), torch.full((2,), -3*16*8.))
    assert_close(deletion_score(lin, x, ramp, 0, [50], most_relevant_first=False), torch.zeros(2))
    assert_close(deletion_score(lin, x, ramp, [1, 1], [25, 75]), torch.zeros(2))    # class 1 reads nothing
    # None: the predicted class, 0
    assert_close(deletion_score(lin, x, ramp, None, [50]), deletion_score(lin, x, ramp, 0, [50]))
    with pytest.raises(ValueError, match='cams must be'): deletion_score(lin, x, ramp[:1], 0)
    with pytest.raises(IndexError, match='out of range'): deletion_score(lin, x, ramp, 2)


# ---- where a cell sits: cell_grid / grid_resize / aligned_cam (cam_eval) ----
from imgcls_course.cam_eval import cell_grid, grid_resize, aligned_cam
import cv2

def _chain(rng):
    "A random chain of 2-5 convs (kernel, stride, padding) and its receptive-field arithmetic: `(net, stride, first)`."
    layers, jump, first = [], 1.0, 0.5   # cell 0 of the input sits at pixel centre 0.5
    c = 3
    for _ in range(rng.integers(2, 6)):
        k = int(rng.choice([1, 3, 5, 7])); s = int(rng.choice([1, 2])); p = int(rng.integers(0, k//2 + 1))
        layers += [nn.Conv2d(c, 4, k, stride=s, padding=p), nn.ReLU()]; c = 4
        first += ((k - 1)/2 - p)*jump   # the textbook recurrence: centre of output 0 in input pixels
        jump *= s
    return nn.Sequential(*layers), jump, first

@pytest.mark.parametrize('seed', range(12))
def test_cell_grid_matches_receptive_field_arithmetic(seed):
    ("cell_grid (measured with gradients) equals the receptive-field recurrence computed from kernel, "
     "stride and padding.")
    rng = np.random.default_rng(seed); torch.manual_seed(seed)
    net, stride, first = _chain(rng)
    net = nn.Sequential(net, nn.LeakyReLU())   # a leaky last layer: no dead cells at the edge of the field
    (sy, fy), (sx, fx) = cell_grid(net, net[1])
    assert (sy, sx) == (stride, stride)
    assert (fy, fx) == (first, first), (seed, net, first, fy, fx)

@pytest.mark.parametrize('seed', range(8))
def test_grid_resize_default_is_cv2_resize(seed):
    "Without a grid, grid_resize is the block-centred bilinear resize that pytorch-grad-cam does with cv2.resize."
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(2, 10)), int(rng.integers(2, 10))
    H, W = h*int(rng.integers(4, 40)), w*int(rng.integers(4, 40))
    m = torch.from_numpy(rng.random((1, h, w)).astype(np.float32))
    assert_close(grid_resize(m, (H, W))[0].numpy(), cv2.resize(m[0].numpy(), (W, H)), atol=1e-5, rtol=0)

def test_grid_resize_puts_a_cell_where_the_grid_says():
    for stride, first in ((32., 0.5), (16., 8.), (8., 3.5)):
        for j in (1, 2, 4):
            one = torch.zeros(1, 7, 7); one[0, j, j] = 1
            r = grid_resize(one, (int(7*stride), int(7*stride)), ((stride, first), (stride, first)))[0]
            y, x = divmod(int(r.argmax()), r.shape[1])
            assert abs(y + 0.5 - (first + stride*j)) <= 0.5 and abs(x + 0.5 - (first + stride*j)) <= 0.5, \
                (stride, first, j, y, x)

def test_aligned_cam_measures_its_grid_and_resizes_the_map(models):
    model, layer = models['lite0']
    x = _x(3, 2, 96, 96)
    g = cell_grid(model, layer)
    assert g == ((32.0, 0.5), (32.0, 0.5))
    al = aligned_cam(model, x, [1, 2], layer=layer, grid=g)
    assert_close(aligned_cam(model, x, [1, 2], layer=layer), al)          # the grid measured on the way
    assert_close(aligned_cam(model, x, [1, 2]), al)                      # and the layer found
    raw = grad_cam(model, x, [1, 2], layer=layer, upsample=False)
    assert_close(al, normalize_cam(grid_resize(normalize_cam(raw), (96, 96), g)), atol=1e-6, rtol=0)
    # with the block-centred grid it is the usual resize, grad_cam's own
    assert_close(aligned_cam(model, x, [1, 2], layer=layer, grid=((32., 16.), (32., 16.))),
                 grad_cam(model, x, [1, 2], layer=layer), atol=1e-5, rtol=0)
    assert (al - grad_cam(model, x, [1, 2], layer=layer)).abs().max() > 0.05
    con = aligned_cam(model, x, [1, 2], layer=layer, grid=g, contrast=[3, 4], method='layercam')
    raw = grad_cam(model, x, [1, 2], layer=layer, upsample=False, contrast=[3, 4], method='layercam')
    # contrast= and method= reach the map
    assert_close(con, normalize_cam(grid_resize(raw, (96, 96), g)), atol=1e-6, rtol=0)

def test_cell_grid_depends_on_the_padding():
    ("Symmetric padding: 32j+0.5 (Lite0, ResNet); TensorFlow's 'SAME' padding: 32j+31.5; "
     "VGG16's unpadded 2x2 pools: the block middle.")
    import timm
    from torchvision.models import vgg16
    torch.manual_seed(0)
    tf = timm.create_model('tf_efficientnet_lite0', pretrained=False).eval()
    assert cell_grid(tf, tf.bn2) == ((32.0, 31.5), (32.0, 31.5))
    vgg = vgg16(weights=None).features.eval()
    assert cell_grid(vgg, vgg[29]) == ((16.0, 8.0), (16.0, 8.0))    # conv5_3's ReLU, stride 16: 16j + 8
    # the last pool, stride 32: 32j + 16, the block middle
    assert cell_grid(vgg, vgg[30]) == ((32.0, 16.0), (32.0, 16.0))

def test_cell_grid_refuses_a_global_layer():
    class Excite(nn.Module):
        def forward(self, x): return x * x.mean((2, 3), keepdim=True).sigmoid()
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), Excite())
    with pytest.raises(ValueError, match='covers the whole input'): cell_grid(net, net[1], max_size=512)
