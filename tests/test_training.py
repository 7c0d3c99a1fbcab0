"The training loop (`imgcls_course.training`) against fastai's `Learner.fit` and optimisers, on tiny synthetic models."
import copy
import numpy as np, pytest, torch, torch.nn as nn
from fastai.optimizer import Adam, SGD
from fastai.metrics import error_rate
import fastai.callback.progress   # noqa: F401  (adds `Learner.no_bar`)
from conftest import tiny_model, split3, tiny_batches, tiny_learner, case
from imgcls_course.training import get_hyper, set_hyper, opt_groups, clear_state, fit, evaluate, RecordHypers

def torch_groups(m): return [{'params': g} for g in split3(m)]   # PyTorch's optimisers take groups as dicts


def test_fit_matches_fastai(tmp_path):
    "Without a schedule, `fit` is fastai's `Learner.fit`: the same loss at every batch, validation loss and metric."
    for seed in range(3):
        for opt_func in (Adam, SGD):
            with case(seed=seed, opt=opt_func.__name__):
                bs = tiny_batches(seed, 6, noise=0.5)
                learn = tiny_learner(bs[:4], bs[4:], tmp_path, seed, opt_func=opt_func, lr=1e-2, metrics=error_rate)
                learn.create_opt()
                sd0, osd0 = copy.deepcopy(learn.model.state_dict()), copy.deepcopy(learn.opt.state_dict())
                rec = RecordHypers()
                torch.manual_seed(seed)                 # the head's dropout
                with learn.no_bar(), learn.no_logging(): learn.fit(2, cbs=rec)
                learn.model.load_state_dict(sd0); learn.opt.load_state_dict(osd0)
                torch.manual_seed(seed)
                h = fit(learn.model, learn.opt, learn.loss_func, bs[:4], bs[4:], 2, metric=error_rate, progress=False)
                np.testing.assert_allclose(h['losses'], rec.losses, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(h['valid_loss'], [v[1] for v in learn.recorder.values], rtol=1e-5)
                np.testing.assert_allclose(h['metric'], [v[2] for v in learn.recorder.values])
                assert h['hps'] == {} and len(h['train_loss']) == 2


def test_fit_follows_the_schedule():
    m = tiny_model(0); opt = torch.optim.SGD(torch_groups(m), lr=1., momentum=0.5)
    lrs = np.array([[1e-3, 1e-2, 1e-1]])*np.linspace(1, 2, 8)[:, None]   # per batch, per group
    h = fit(m, opt, nn.CrossEntropyLoss(), tiny_batches(0, 4), tiny_batches(1, 1), 2,
            {'lr': lrs, 'mom': np.linspace(0.9, 0.8, 8)}, progress=False)
    np.testing.assert_allclose(h['hps']['lr'], lrs)
    np.testing.assert_allclose(h['hps']['mom'], np.linspace(0.9, 0.8, 8)[:, None].repeat(3, 1))
    assert get_hyper(opt, 'lr') == list(lrs[-1])                  # the last batch's, left in place
    with pytest.raises(ValueError, match='7 values for 8 batches'):
        fit(m, opt, nn.CrossEntropyLoss(), tiny_batches(0, 4), tiny_batches(1, 1), 2, {'lr': lrs[:7]})


def test_evaluate_weighs_items_not_batches():
    m = tiny_model(0)
    x, y = tiny_batches(0, 1, bs=24)[0]
    loss, err = evaluate(m, [(x[:3], y[:3]), (x[3:], y[3:])], nn.CrossEntropyLoss(), error_rate)
    m.eval()
    with torch.no_grad(): out = m(x)
    assert loss == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-6)
    assert err == pytest.approx(error_rate(out, y).item())
    assert not m.training


def test_hypers_on_pytorch_and_fastai_optimisers():
    "`set_hyper` then `get_hyper` round-trips on PyTorch's SGD, Adam and AdamW and fastai's Adam and SGD, per group."
    m = tiny_model(0)
    opts = {'torch SGD': torch.optim.SGD(torch_groups(m), lr=1e-3, momentum=0.9),
            'torch Adam': torch.optim.Adam(torch_groups(m)), 'torch AdamW': torch.optim.AdamW(torch_groups(m)),
            'fastai Adam': Adam(split3(m), lr=1e-3), 'fastai SGD': SGD(split3(m), lr=1e-3, mom=0.9)}
    for name, opt in opts.items():
        with case(opt=name):
            assert [len(g) for g in opt_groups(opt)] == [len(g) for g in split3(m)]
            set_hyper(opt, 'lr', [1e-5, 1e-4, 1e-3]); set_hyper(opt, 'mom', np.float64(0.85))
            assert get_hyper(opt, 'lr') == [1e-5, 1e-4, 1e-3] and get_hyper(opt, 'mom') == [0.85]*3
            set_hyper(opt, 'lr', 3e-3); assert get_hyper(opt, 'lr') == [3e-3]*3
            with pytest.raises(ValueError, match='2 values'): set_hyper(opt, 'lr', [1., 2.])
    assert [g['betas'] for g in opts['torch Adam'].param_groups] == [(0.85, 0.999)]*3   # beta2 untouched


def test_clear_state():
    "Running averages go; fastai's per-parameter flags (`do_wd`) stay."
    x, y = tiny_batches(0, 1)[0]
    for name, make in (('torch', lambda m: torch.optim.Adam(torch_groups(m))),
                       ('fastai', lambda m: Adam(split3(m), lr=1e-3))):
        with case(opt=name):
            m = tiny_model(0); opt = make(m)
            if name == 'fastai': opt.state[m[0].bias]['do_wd'] = False
            nn.functional.cross_entropy(m(x), y).backward(); opt.step()
            clear_state(opt)
            if name == 'torch': assert len(opt.state) == 0
            else: assert opt.state[m[0].bias] == {'do_wd': False} and opt.state[m[0].weight] == {}
