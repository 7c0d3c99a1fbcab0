"Our LR range test, suggestion rules and one-cycle schedule against fastai's, on tiny synthetic models."
import copy, math
import numpy as np, pytest, torch, torch.nn as nn
import fastcore.test as fct   # (imported as a module: pytest would collect a bare `test_close` as a test)
from fastai.optimizer import Adam, SGD
from fastai.callback import schedule as fs
from conftest import tiny_model, split3, tiny_batches, tiny_learner, case
from imgcls_course.training import get_hyper, RecordHypers
from imgcls_course.lr_finder import (lr_range_test, lr_find, suggest_lrs, minimum, steep, valley, slide, sched_exp,
                                     combined_cos, one_cycle_sched, fit_one_cycle, SmoothLoss)

def batches(seed, n=8):
    "Batches with noisy labels: the finder's curve has a real drop, and some noise."
    return tiny_batches(seed, n, noise=0.5)

FUNCS = (minimum, steep, valley, slide)
FA_FUNCS = (fs.minimum, fs.steep, fs.valley, fs.slide)

FINDER_RUNS = [   # seed, num_it, batches, optimiser, end_lr
    (0, 100, 8, Adam, 10), (1, 100, 8, Adam, 10), (2, 60, 8, Adam, 10), (3, 100, 8, SGD, 10),
    (4, 40, 5, Adam, 10),      # the loader is shorter than num_it: several passes
    (5, 50, 50, Adam, 1e-2),   # never diverges: runs all num_it steps
    (6, 100, 8, SGD, 100), (7, 30, 8, Adam, 1)]

def test_lr_find_matches_fastai(tmp_path):
    "The same learning rates, smoothed losses and suggestions as fastai's `lr_find`; model and optimiser restored."
    for seed, num_it, n_batches, opt_func, end_lr in FINDER_RUNS:
        with case(seed=seed, num_it=num_it, opt=opt_func.__name__, end_lr=end_lr):
            bs = batches(seed, n_batches)
            learn = tiny_learner(bs, bs[:1], tmp_path, seed, opt_func=opt_func)
            sd0 = copy.deepcopy(learn.model.state_dict())
            torch.manual_seed(100+seed)
            with learn.no_bar():
                fa = learn.lr_find(num_it=num_it, end_lr=end_lr, suggest_funcs=FA_FUNCS, show_plot=False)
            for k, v in learn.model.state_dict().items(): assert torch.equal(v, sd0[k])   # fastai restored it
            fa_lrs, fa_losses = learn.recorder.lrs, [float(l) for l in learn.recorder.losses]
            opt_sd = copy.deepcopy(learn.opt.state_dict())
            torch.manual_seed(100+seed)
            r = lr_find(learn.model, bs, learn.loss_func, learn.opt, suggest_funcs=FUNCS, show_plot=False,
                        progress=False, num_it=num_it, end_lr=end_lr)
            # the same learning rates, exactly; the same number of steps; the same smoothed losses
            assert r.lrs == fa_lrs
            assert r.lrs == [sched_exp(1e-7, end_lr, i/num_it) for i in range(len(r.lrs))]
            assert len(r.losses) == len(fa_losses)
            np.testing.assert_allclose(r.losses, fa_losses, rtol=1e-5, atol=1e-6)
            # the same four suggestions
            assert [v[0] for v in r.suggestions.values()] == list(fa)
            assert list(r.suggestions) == list(fa._fields)
            # and we left the model and the optimiser as we found them
            for k, v in learn.model.state_dict().items(): assert torch.equal(v, sd0[k])
            assert learn.opt.state_dict()['hypers'] == opt_sd['hypers']
            if len(r.lrs) < num_it:
                assert r.stopped_early and r.losses[-1] > 4*min(r.losses), (len(r.lrs), r.losses[-1], min(r.losses))


def _fastai_window(lrs, losses, num_it):
    "fastai's `lr_find` post-processing, copied: window, then cut at the first NaN."
    lrs, losses = torch.tensor(lrs[num_it//10:-5]), torch.tensor(losses[num_it//10:-5])
    nan_idxs = torch.nonzero(torch.isnan(losses.view(-1)))
    if len(nan_idxs) > 0: lrs, losses = lrs[:min(nan_idxs)], losses[:min(nan_idxs)]
    return lrs, losses


def _curve(seed, n):
    "A noisy LR-finder-like curve: flat, then falling, then exploding."
    rng = np.random.default_rng(seed)
    lrs = [sched_exp(1e-7, 10, i/n) for i in range(n)]
    x = np.linspace(0, 1, n)
    losses = (2.3 - 1.5/(1+np.exp(-(x-rng.uniform(.3, .6))*rng.uniform(8, 20)))
              + np.exp((x-rng.uniform(.8, 1.1))*rng.uniform(10, 30)))
    return lrs, list(losses + rng.normal(0, rng.uniform(0.001, 0.05), n))


def test_suggestions_match_fastai():
    "Each rule's suggestion and its point on the plot equal fastai's, on 25 random curves of 30 and of 100 points."
    for seed in range(25):
        for n in (30, 100):
            with case(seed=seed, n=n):
                lrs, losses = _curve(seed, n)
                ours = suggest_lrs(lrs, losses, n, FUNCS)
                wl, wloss = _fastai_window(lrs, losses, n)
                for (name, (v, (x, y))), f in zip(ours.items(), FA_FUNCS):
                    fv, (fx, fy) = f(wl, wloss, n)
                    assert v == fv, name
                    assert x == pytest.approx(float(fx)) and y == pytest.approx(float(fy)), name


def test_nan_cut_like_fastai():
    for seed in range(5):
        with case(seed=seed):
            lrs, losses = _curve(seed, 100)
            losses[60:] = [float('nan')]*40
            ours = suggest_lrs(lrs, losses, 100, FUNCS)
            wl, wloss = _fastai_window(lrs, losses, 100)
            assert [v[0] for v in ours.values()] == [f(wl, wloss, 100)[0] for f in FA_FUNCS]


def test_inf_losses_are_cut():
    "fastai only cuts at NaN: with an inf, its `steep` and `slide` point into the diverged region; we cut at either."
    lrs, losses = _curve(0, 100)
    clean = suggest_lrs(lrs, losses[:70] + [float('nan')]*30, 100, FUNCS)
    ours = suggest_lrs(lrs, losses[:70] + [float('inf')]*30, 100, FUNCS)
    assert [v[0] for v in ours.values()] == [v[0] for v in clean.values()]
    assert all(math.isfinite(v[0]) for v in ours.values())
    wl, wloss = _fastai_window(lrs, losses[:70] + [float('inf')]*30, 100)
    for f, name in ((fs.steep, 'steep'), (fs.slide, 'slide')):
        assert f(wl, wloss, 100)[0] != clean[name][0]
        assert f(wl, wloss, 100)[0] > lrs[69]                     # a learning rate where the loss was inf


def test_too_few_points():
    lrs, losses = _curve(0, 100)
    for n_rec, num_it in [(0, 100), (12, 100), (16, 100), (6, 6)]:
        with case(n_rec=n_rec, num_it=num_it), pytest.raises(ValueError, match='usable point'):
            suggest_lrs(lrs[:n_rec], losses[:n_rec], num_it, FUNCS)


def test_slide_short_window():
    "fastai's `slide` needs 16 points (IndexError below); ours narrows its window to what there is, as fastai's would."
    for seed in range(5):
        with case(seed=seed):
            lrs, losses = _curve(seed, 100)
            l, s = torch.tensor(lrs[10:22]), torch.tensor(losses[10:22])
            with pytest.raises(IndexError): fs.slide(l, s, 100)
            v, (x, y) = slide(l, s, 100)
            fv, (fx, fy) = fs.slide(l, s, 100, lr_diff=len(l)-1)
            assert v == fv and x == fx, (v, fv)
            fct.test_close(y, float(fy), eps=1e-6)


class NaNAfter(nn.Module):
    "A loss that turns NaN from step `k` on (an exploding model, made deterministic)."
    def __init__(self, k): super().__init__(); self.k, self.n = k, 0
    def forward(self, out, y):
        self.n += 1
        l = nn.functional.cross_entropy(out, y)
        return l * float('nan') if self.n > self.k else l


def test_nan_loss_stops_and_warns(tmp_path):
    bs = batches(0)
    m = tiny_model(0); opt = Adam(split3(m), lr=1e-3)
    w0 = copy.deepcopy(m.state_dict())
    r = lr_range_test(m, bs, NaNAfter(40), opt, num_it=100, end_lr=1e-3, progress=False)
    assert len(r.losses) == 41 and r.stopped_early and math.isnan(r.losses[-1])
    s = suggest_lrs(r.lrs, r.losses, 100, FUNCS)
    assert all(math.isfinite(v[0]) for v in s.values())
    for k, v in m.state_dict().items(): assert torch.equal(v, w0[k])
    with pytest.warns(UserWarning, match='usable point'):
        r2 = lr_find(m, bs, NaNAfter(5), opt, num_it=100, show_plot=False, progress=False)
    assert r2.suggestions == {} and len(r2.lrs) == 6


def test_loader_guards():
    bs = batches(0, 3)
    m = tiny_model(0); opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    r = lr_range_test(m, bs, nn.CrossEntropyLoss(), opt, num_it=20, end_lr=1e-3, progress=False)
    assert len(r.lrs) == 20                                     # 3 batches cycled
    with pytest.raises(ValueError, match='ran out after 3 of 20'):
        lr_range_test(m, iter(bs), nn.CrossEntropyLoss(), opt, num_it=20, progress=False)
    with pytest.raises(ValueError, match='ran out after 0'):
        lr_range_test(m, [], nn.CrossEntropyLoss(), opt, num_it=20, progress=False)
    assert get_hyper(opt, 'lr') == [1e-3]                       # restored after the failure too
    r = lr_range_test(m, bs, nn.CrossEntropyLoss(), opt, num_it=2, end_lr=1e-3, progress=False)
    assert len(r.lrs) == 6                                      # fastai's minimum


def test_smooth_loss_matches_fastai():
    from fastai.learner import AvgSmoothLoss
    class L_: pass
    a, b = AvgSmoothLoss(), SmoothLoss()
    rng = np.random.default_rng(0)
    for v in rng.uniform(0, 5, 50):
        l = L_(); l.loss = torch.tensor(v, dtype=torch.float32); a.accumulate(l); b.add(l.loss)
        assert torch.equal(a.value, b.value)


def test_combined_cos_matches_fastai():
    "Equal up to fastai's float32 phase arithmetic: a few 1e-6 of the peak where a phase is short (pct 0.99)."
    ps = np.linspace(0, 1, 501)
    for pct in (0.1, 0.25, 0.3, 0.5, 0.99):
        with case(pct=pct):
            ours, fa = combined_cos(pct, 1e-4, 1e-2, 1e-9), fs.combined_cos(pct, 1e-4, 1e-2, 1e-9)
            fct.test_close([ours(p) for p in ps], [fa(p) for p in ps], eps=1e-5 * 1e-2)
            assert ours(0.) == fa(0.) == 1e-4


ONE_CYCLES = [   # n_epoch, lr_max, pct_start, div, div_final, moms (None: fastai's default)
    (2, 1e-2, 0.25, 25., 1e5, None), (3, [1e-4, 1e-3, 1e-2], 0.3, 5., 1e5, None),
    (1, 3e-3, 0.99, 25., 1e5, None), (2, [1e-3, 2e-3, 5e-3], 0.5, 10., 1e3, (0.9, 0.8, 0.9)),
    (4, 1e-3, 0.1, 100., 1e6, (0.95, 0.85, 0.9))]

def test_one_cycle_matches_fastai(tmp_path):
    "fastai's `fit_one_cycle` at every batch: each group's lr, the momentum, and (with fastai's optimiser) the loss."
    bs = batches(0, 6)
    for n_epoch, lr_max, pct_start, div, div_final, moms in ONE_CYCLES:
        with case(n_epoch=n_epoch, lr_max=lr_max, pct_start=pct_start, div=div, div_final=div_final, moms=moms):
            learn = tiny_learner(bs[:5], bs[:1], tmp_path)
            learn.create_opt()
            sd0, osd0 = copy.deepcopy(learn.model.state_dict()), copy.deepcopy(learn.opt.state_dict())
            rec = RecordHypers()
            kw = dict(pct_start=pct_start, div=div, div_final=div_final, moms=moms or (0.95, 0.85, 0.95))
            torch.manual_seed(1)
            with learn.no_bar(), learn.no_logging():
                learn.fit_one_cycle(n_epoch, lr_max, cbs=rec, **{**kw, 'moms': moms})
            # the schedule alone
            s = one_cycle_sched(n_epoch*5, np.broadcast_to(np.array(lr_max, float), (3,)), **kw)
            np.testing.assert_allclose(s['lr'], rec.lrs, rtol=1e-6)
            np.testing.assert_allclose(s['mom'], np.array(rec.moms)[:, 0], rtol=1e-6)
            # and our training loop, with fastai's optimiser, from the same state
            learn.model.load_state_dict(sd0); learn.opt.load_state_dict(osd0)
            torch.manual_seed(1)
            h = fit_one_cycle(learn.model, learn.opt, learn.loss_func, bs[:5], bs[:1], n_epoch, lr_max,
                              progress=False, **kw)
            np.testing.assert_allclose(h['hps']['lr'], rec.lrs, rtol=1e-6)
            np.testing.assert_allclose(h['hps']['mom'], rec.moms, rtol=1e-6)
            np.testing.assert_allclose(h['losses'], rec.losses, rtol=1e-4, atol=1e-5)


def test_one_cycle_bad_input():
    with pytest.raises(ValueError, match='pct_start'): one_cycle_sched(10, 1e-3, pct_start=1.)
    m = tiny_model(0); opt = Adam(split3(m), lr=1e-3)
    with pytest.raises(ValueError, match='2 learning rates for 3'):
        fit_one_cycle(m, opt, nn.CrossEntropyLoss(), batches(0, 2), batches(0, 1), 1, [1e-3, 1e-2], progress=False)


def test_fastai_fails_where_we_explain():
    "fastai issue #3658: an empty window makes every fastai rule raise; ours raises one clear ValueError instead."
    lrs, losses = _curve(0, 100)
    wl, wloss = _fastai_window(lrs[:14], losses[:14], 100)
    for f in FA_FUNCS:
        with pytest.raises((IndexError, ValueError)): f(wl, wloss, 100)
    with pytest.raises(ValueError, match='Only 0 usable point'): suggest_lrs(lrs[:14], losses[:14], 100, FUNCS)
