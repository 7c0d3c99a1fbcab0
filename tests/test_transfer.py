"""Freezing, slice expansion and `fine_tune` against fastai's, on tiny synthetic models and on the pets learner;
the mixed-precision step (`mixed_precision`, the deep dive of lessons 20 and 31) and what fastai's
`to_fp16`/`to_bf16` do on a CPU."""
import copy, warnings
import numpy as np, pytest, torch, torch.nn as nn
import fastcore.test as fct   # (imported as a module: pytest would collect a bare `test_close` as a test)
from fastcore.basics import even_mults as fc_even_mults
from fastai.optimizer import Adam
from fastai.torch_core import params, norm_bias_params as fa_norm_bias_params
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.callback.fp16 import MixedPrecision   # (its module patches `Learner.to_fp16` and `Learner.to_bf16`)
from conftest import tiny_model, split3, tiny_batches, tiny_learner, list_learner, case
from imgcls_course.training import RecordHypers
from imgcls_course.models import lite0_split
from imgcls_course.transfer import (even_mults, expand_lr, freeze, unfreeze, freeze_to, norm_params, fine_tune,
                                    fastai_adamw, norm_bias_params, MaskedAdamW)
from imgcls_course.mixed_precision import amp_train_step, time_train_step

# `tiny_model`'s parameters by group (see conftest): what freezing leaves trainable, and everything
BN0, LN1 = 2*32, 2*16                                 # the body's BatchNorm1d(32) and LayerNorm(16): weights and biases
HEAD = (16*8+8) + 2*8 + (8*4+4)                       # Linear(16, 8), BatchNorm1d(8), Linear(8, 4)
TOTAL = [10*32+32 + BN0, 32*16+16 + LN1, HEAD]

def trainable(m): return [n for n, p in m.named_parameters() if p.requires_grad]


def test_even_mults():
    for n in (1, 2, 3, 5):
        for start, stop in [(1e-6, 1e-4), (1e-5, 1e-3), (2., 32.), (3e-4, 3e-3), (1e-2, 1e-2)]:
            assert even_mults(start, stop, n) == fc_even_mults(start, stop, n), (start, stop, n)


def _fastai_lrs(lr, n):
    o = Adam([[nn.Parameter(torch.zeros(1))] for _ in range(n)], lr=1e-3)
    o.set_hyper('lr', lr)
    return [h['lr'] for h in o.hypers]

def test_expand_lr():
    "The learning rates fastai's optimiser sets, for slices, a number and a list, and 1 to 5 groups."
    for n in (1, 2, 3, 5):
        for lr in (slice(1e-5, 1e-3), slice(1e-6, 1e-4), slice(1e-3), slice(None, 3e-3), 2e-3,
                   [1e-4*(i+1) for i in range(n)]):
            assert expand_lr(lr, n) == _fastai_lrs(lr, n), (lr, n)


def test_expand_lr_bad():
    with pytest.raises(ValueError, match='2 learning rates for 3'): expand_lr([1e-3, 1e-2], 3)
    with pytest.raises(ValueError, match='positive'): expand_lr(slice(0, 1e-3), 3)
    with pytest.raises(ValueError, match='positive'): expand_lr(slice(-1e-4, 1e-3), 3)
    with pytest.raises(ValueError, match='positive'): expand_lr(slice(1e-4, None), 3)
    with pytest.raises(AssertionError): _fastai_lrs([1e-3, 1e-2], 3)   # fastai refuses too


def test_freeze_like_fastai(tmp_path):
    bs = tiny_batches(0)
    for n in (-1, 0, 1, 2, -2):
        for train_bn in (True, False):
            learn = tiny_learner(bs[:4], bs[4:], tmp_path, train_bn=train_bn)
            learn.freeze_to(n)
            ours = tiny_model(0)
            opt = fastai_adamw(split3(ours))
            freeze_to(ours, opt, n, train_bn=train_bn)
            assert trainable(ours) == trainable(learn.model), (n, train_bn)
    # frozen to the head: the head, and every normalisation layer of the body (BatchNorm and LayerNorm alike)
    ours = tiny_model(0); freeze_to(ours, fastai_adamw(split3(ours)), -1)
    assert trainable(ours) == (['1.weight', '1.bias', '4.weight', '4.bias']
                               + [f'6.{k}.{w}' for k in (1, 2, 3) for w in ('weight', 'bias')])


def test_freeze_guards():
    m = tiny_model(0)
    with pytest.raises(ValueError, match='two parameter groups'): freeze(m, fastai_adamw([list(m.parameters())]))
    opt = fastai_adamw(split3(m))
    with pytest.warns(UserWarning, match='whole model is frozen'): freeze_to(m, opt, 3, train_bn=False)
    assert trainable(m) == []
    unfreeze(m, opt); assert len(trainable(m)) == len(list(m.parameters()))


def test_freeze_clears_optimizer_state():
    m = tiny_model(0); opt = fastai_adamw(split3(m))
    x, y = tiny_batches(0, 1)[0]
    nn.functional.cross_entropy(m(x), y).backward(); opt.step()
    assert len(opt.state) > 0
    freeze(m, opt); assert len(opt.state) == 0


def test_freeze_lite0_learner():
    "The real learner: our split and freeze leave exactly what fastai's frozen learner leaves trainable."
    from imgcls_course.models import lite0_learner
    from imgcls_course.presizing import pets_dls
    learn = lite0_learner(pets_dls(size=32, bs=8))
    ours = copy.deepcopy(learn.model)
    for p in ours.parameters(): p.requires_grad_(True)
    opt = fastai_adamw(lite0_split(ours))
    freeze(ours, opt)
    assert trainable(ours) == trainable(learn.model)
    body = [n for n in trainable(ours) if n.startswith('0.')]
    assert len(body) == len(norm_params(ours[0])) > 0
    learn.unfreeze(); unfreeze(ours, opt)
    assert trainable(ours) == trainable(learn.model)
    learn.create_opt()
    assert [[id(p) for p in g] for g in lite0_split(learn.model)] == [[id(p) for p in g] for g in learn.opt.param_lists]


def test_norm_bias_params_like_fastai():
    "What fastai leaves out of weight decay: the same set on the tiny model, a conv net with biases, and Lite0."
    from imgcls_course.models import efficientnet_lite0
    convnet = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, bias=False),
                            nn.InstanceNorm2d(8, affine=True), nn.Flatten(), nn.LazyLinear(4))
    convnet(torch.zeros(1, 3, 8, 8))
    for m in (tiny_model(0), convnet, efficientnet_lite0(pretrained=False)):
        ours, theirs = {id(p) for p in norm_bias_params(m)}, {id(p) for p in fa_norm_bias_params(m)}
        assert ours == theirs and len(ours) > 0, (len(ours), len(theirs))


def bn_after_relu(seed):
    "Every bias gets a real gradient (none right before a batch-norm: its gradient is noise that Adam amplifies)."
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.BatchNorm1d(32), nn.Linear(32, 16), nn.ReLU(),
                         nn.LayerNorm(16), nn.Linear(16, 4))


def test_masked_adamw_like_fastai(tmp_path):
    "AdamW with fastai's weight-decay mask trains like fastai's Adam with `wd_bn_bias=False`; plain AdamW does not."
    for seed in range(4):
        for lr, wd in [(1e-2, 0.1), (3e-3, 0.01), (1e-3, 1.)]:
            with case(seed=seed, lr=lr, wd=wd):
                bs = tiny_batches(seed, 8)
                learn = list_learner(bn_after_relu(seed), bs, bs[:1], tmp_path, lr=lr)
                learn.create_opt(); learn.opt.set_hyper('wd', wd)
                assert not any(learn.opt.state[p].get('do_wd', True) for p in fa_norm_bias_params(learn.model))
                masked, plain = bn_after_relu(seed), bn_after_relu(seed)
                opts = [(learn.model, learn.opt),
                        (masked, fastai_adamw(split3(masked), lr=lr, wd=wd, no_wd=norm_bias_params(masked))),
                        (plain, fastai_adamw(split3(plain), lr=lr, wd=wd))]
                assert isinstance(opts[1][1], MaskedAdamW)
                for x, y in bs:
                    for m, o in opts:
                        nn.functional.cross_entropy(m(x), y).backward(); o.step(); o.zero_grad()
                d = lambda m: max((a - b).abs().max().item() for a, b in zip(m.parameters(), learn.model.parameters()))
                fct.test_close(d(masked), 0, eps=1e-5)
                assert d(plain) > 100*max(d(masked), 1e-7), (d(plain), d(masked))
                # the mask is per parameter: the groups' hyper-parameters are untouched by a step
                assert [g['weight_decay'] for g in opts[1][1].param_groups] == [wd]*3


def test_masked_adamw_no_closure():
    m = bn_after_relu(0); o = fastai_adamw([params(m)])
    with pytest.raises(NotImplementedError, match='closure'): o.step(lambda: 0.)


FINE_TUNES = [dict(epochs=1), dict(epochs=2, base_lr=1e-2),
              dict(epochs=3, base_lr=5e-3, freeze_epochs=2, lr_mult=10, pct_start=0.2, div=10.),
              dict(epochs=1, base_lr=1e-3, freeze_epochs=1, lr_mult=1000)]

def test_fine_tune_like_fastai(tmp_path):
    "fastai's `fine_tune` at every batch (each group's lr, the momentum, what trains, the loss), with either optimiser."
    for kw in FINE_TUNES:
        with case(**kw): _fine_tune_like_fastai(kw, tmp_path)

def _fine_tune_like_fastai(kw, tmp_path):
    bs = tiny_batches(1)
    learn = tiny_learner(bs[:4], bs[4:], tmp_path)
    rec = RecordHypers()
    torch.manual_seed(3)
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(**kw, cbs=rec)
    def ours(opt_maker):
        learn2 = tiny_learner(bs[:4], bs[4:], tmp_path); m = learn2.model
        learn2.create_opt()
        opt = learn2.opt if opt_maker == 'fastai' else fastai_adamw(split3(m), no_wd=norm_bias_params(m))
        torch.manual_seed(3)
        h = fine_tune(m, opt, nn.CrossEntropyLoss(), bs[:4], bs[4:], progress=False, **kw)
        return [h[k][q] for q in ('hps', 'losses') for k in ('frozen', 'unfrozen')], m
    for opt_maker in ('fastai', 'torch'):
        with case(opt=opt_maker):
            (hp1, hp2, l1, l2), m = ours(opt_maker)
            lrs, moms = np.array(hp1['lr'] + hp2['lr']), np.array(hp1['mom'] + hp2['mom'])
            assert lrs.shape == np.array(rec.lrs).shape
            np.testing.assert_allclose(lrs, rec.lrs, rtol=1e-6)
            np.testing.assert_allclose(moms, rec.moms, rtol=1e-6)
            n_frozen = 4*kw.get('freeze_epochs', 1)
            # phase 1: the body's BatchNorm and LayerNorm, and the head; phase 2: everything
            assert rec.per_fit('trainable') == [[[BN0, LN1, HEAD]]*n_frozen, [TOTAL]*(len(rec.lrs)-n_frozen)]
            # fastai's optimiser, or ours with fastai's weight-decay mask: the same training
            np.testing.assert_allclose(l1 + l2, rec.losses, rtol=1e-4, atol=1e-5)
            assert len(trainable(m)) == 14


def test_fine_tune_phase_lrs():
    "The documented defaults: phase 1 peaks at [2e-4, 2e-4, 2e-3], phase 2 at [1e-5, 1e-4, 1e-3] (div 5)."
    m = tiny_model(0); opt = fastai_adamw(split3(m))
    h = fine_tune(m, opt, nn.CrossEntropyLoss(), tiny_batches(0, 4), tiny_batches(1, 1), 1, progress=False)
    p1, p2 = np.array(h['frozen']['hps']['lr']), np.array(h['unfrozen']['hps']['lr'])
    np.testing.assert_allclose(p1[0], np.array([2e-4, 2e-4, 2e-3])/25)
    np.testing.assert_allclose(p2[0], np.array([1e-5, 1e-4, 1e-3])/5)


# Measured over 20 seeds of this test: the autocast loss differed from float32's by at most 9.7e-4 (bfloat16) and
# 1.9e-4 (float16) of its value, the SGD step by at most 0.12 and 4.4e-3 of its norm. The tolerances leave a margin
# of 2.5x or more, and still catch a step left scaled (x65536), a skipped step (1) or one in the wrong direction (2).
AMP_TOL = {torch.bfloat16: dict(loss=1e-2, step=0.3), torch.float16: dict(loss=1e-2, step=0.03)}

def test_amp_train_step_cpu():
    "The autocast loss, and the SGD step from it, equal float32's (same model, batch, dropout) to 16-bit precision."
    for seed in range(3):
        for dtype in (torch.bfloat16, torch.float16):
            with case(seed=seed, dtype=dtype):
                m = tiny_model(seed); m32 = copy.deepcopy(m); w0 = [p.detach().clone() for p in m.parameters()]
                opt, opt32 = torch.optim.SGD(m.parameters(), lr=0.1), torch.optim.SGD(m32.parameters(), lr=0.1)
                scaler = torch.amp.GradScaler('cpu') if dtype == torch.float16 else None
                x, y = tiny_batches(seed, 1)[0]
                torch.manual_seed(seed); l32 = nn.functional.cross_entropy(m32.train()(x), y)
                l32.backward(); opt32.step()
                torch.manual_seed(seed)
                loss = amp_train_step(m.train(), (x, y), nn.CrossEntropyLoss(), opt, dtype=dtype, scaler=scaler)
                assert loss.dtype == torch.float32
                fct.test_close(loss.item(), l32.item(), eps=AMP_TOL[dtype]['loss']*l32.item())
                step = lambda model: torch.cat([(p.detach() - w).flatten() for p, w in zip(model.parameters(), w0)])
                rel = ((step(m) - step(m32)).norm() / step(m32).norm()).item()
                assert rel < AMP_TOL[dtype]['step'], f"the {dtype} step differs from float32's by {rel:.3g} of its norm"
                if scaler is not None: assert scaler.get_scale() == 2.**16, scaler.get_scale()   # no overflow


def _cpu_learner(model, path):
    "A fastai `Learner` whose data, and so model, stay on the CPU even where a GPU exists."
    ds = [(x, y) for xb, yb in tiny_batches(0, 2) for x, y in zip(xb, yb)]
    return Learner(DataLoaders(DataLoader(ds, bs=8), DataLoader(ds[:8], bs=8), device='cpu', path=path), model,
                   loss_func=nn.CrossEntropyLoss())

def _fit_dtypes(learn, layer):
    "The dtypes `layer` computes in during one epoch of `learn.fit`."
    seen = []
    h = layer.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter('ignore'); learn.fit(1, 1e-2)         # without a GPU: "CUDA is not available"
    h.remove()
    return set(seen)

def test_fastai_mixed_precision_changes_nothing_on_cpu(tmp_path):
    """fastai's `MixedPrecision` enters `autocast('cuda')`: on CPU tensors the forward pass stays float32 (lesson 31
    says so; it once said `to_bf16()` "runs here"), while PyTorch's CPU autocast computes in bfloat16 or float16."""
    for mode in ('to_fp16', 'to_bf16'):
        with case(mode=mode):
            m = tiny_model(0)
            learn = getattr(_cpu_learner(m, tmp_path), mode)()
            assert any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
            assert _fit_dtypes(learn, m[0]) == {torch.float32}
            dt = torch.float16 if mode == 'to_fp16' else torch.bfloat16
            x = tiny_batches(0, 1)[0][0]
            with torch.autocast('cpu', dtype=dt): assert m[0](x).dtype == dt   # what the hook would have seen
            assert all(p.dtype == torch.float32 for p in m.parameters())      # the weights stay float32 either way


def test_time_train_step():
    "A positive CPU time per step, and the model trained (its weights moved)."
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 12))
    w0 = m[0].weight.detach().clone()
    t = time_train_step(m, bs=4, size=16, reps=2)
    assert isinstance(t, float) and t > 0
    assert not torch.equal(w0, m[0].weight)
