"""`imgcls_course.losses` against PyTorch: values and autograd gradients on many seeds, shapes, reductions,
class weights, ignored targets and label smoothing; logits of magnitude 1e4; clear errors on bad input.

Tolerance: float32 results must agree within 1e-5, absolutely for magnitudes up to 1 and relatively above
(a float32 near 10 is only stored to within ~1e-6). `pytest tests/test_losses.py -k summary -s` prints the
largest differences measured, absolute and relative to max(1, |PyTorch's value|): the relative ones are below
1e-6 on the machine these tests were written on (the worst, 3e-7); the absolute ones are larger only where the
values are large (3e-2 on the losses of 1e4-sized logits). Other CPUs add floats up in other orders (vector width,
fused multiply-add), so the tolerance leaves a wide margin above that float noise;
`test_tolerance_catches_formula_errors` shows it still catches a formula that is wrong by a little.

Each test checks one behaviour on every seed and setting it lists, in a loop; a failure names them (`case`)."""
import itertools
import pytest, torch
import torch.nn.functional as F
from conftest import case
from imgcls_course.losses import softmax, log_softmax, logsumexp, nll_loss, cross_entropy, binary_cross_entropy

TOL = 1e-5

SEEDS = range(8)
# (C,) unbatched, (N,C), and (N,C,d1,...) with one to three extra dimensions
SHAPES = [(7,), (8, 5), (16, 37), (4, 3, 5), (2, 6, 3, 4), (2, 4, 2, 3, 2)]
REDUCTIONS = ['none', 'mean', 'sum']
SMOOTHING = [0., 0.1, 0.5, 1.]

def make(seed, shape, scale=3., dtype=torch.float32, ignore=False):
    "Seeded logits of `shape`, class-index targets (every third one ignored if `ignore`) and class weights."
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    C = shape[1] if len(shape) > 1 else shape[0]
    t = torch.randint(0, C, (shape[0],) + shape[2:] if len(shape) > 1 else (), generator=g)
    if ignore and t.dim(): t.view(-1)[1::3] = -100
    w = (torch.rand(C, generator=g, dtype=torch.float64) + 0.1).to(dtype)
    return x, t, w

def diffs(a, b):
    "Largest absolute difference, and largest difference relative to `max(1, |b|)`."
    a, b = a.detach().double(), b.detach().double()
    d = (a - b).abs()
    return (d.max().item(), (d / b.abs().clamp(min=1)).max().item()) if d.numel() else (0., 0.)

def check(a, b, tol=TOL):
    "Assert `a` equals `b` within `tol * max(1, |b|)` elementwise, with the same shape and no inf/NaN."
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    assert a.dtype == b.dtype, f"dtypes differ: {a.dtype} vs {b.dtype}"
    assert torch.isfinite(a).all() and torch.isfinite(b).all(), "inf or NaN"
    _, rel = diffs(a, b)
    assert rel <= tol, f"differ by {rel:.3g} (relative to max(1,|ref|)) > {tol}"

def run(f, x, g=None):
    "`f(x)` and the autograd gradient of `(f(x)*g).sum()` with respect to `x` (`g` defaults to ones)."
    x = x.clone().requires_grad_()
    y = f(x)
    y.backward(torch.ones_like(y) if g is None else g)
    return y.detach(), x.grad

def compare(ours, ref, x, g=None, tol=TOL):
    (ya, ga), (yb, gb) = run(ours, x, g), run(ref, x, g)
    check(ya, yb, tol); check(ga, gb, tol)
    return diffs(ya, yb), diffs(ga, gb)

def upstream(shape, seed):
    "A seeded upstream gradient in [-1, 1] for vector-valued functions."
    return torch.rand(shape, generator=torch.Generator().manual_seed(1000 + seed)) * 2 - 1

def cdim(shape): return 1 if len(shape) > 1 else 0

BOOL = [False, True]

# ---------------------------------------------------------------------------------------- softmax family
def test_softmax():
    "softmax, log_softmax and logsumexp: values and gradients, over the class dimension and the last one."
    for seed, shape in itertools.product(SEEDS, SHAPES):
        x, _, _ = make(seed, shape)
        for d in {cdim(shape), -1}:
            with case(seed=seed, shape=shape, dim=d):
                g = upstream(shape, seed)
                compare(lambda x: softmax(x, d), lambda x: F.softmax(x, d), x, g)
                compare(lambda x: log_softmax(x, d), lambda x: F.log_softmax(x, d), x, g)
                compare(lambda x: logsumexp(x, d), lambda x: torch.logsumexp(x, d), x)

def test_softmax_rows_sum_to_one():
    x, _, _ = make(0, (64, 37, 3), scale=20.)
    p = softmax(x)
    check(p.sum(1), torch.ones(64, 3))
    assert (p >= 0).all() and (p <= 1).all()

# ---------------------------------------------------------------------------------------- nll_loss
def test_nll_loss():
    for shape, reduction, use_weight, ignore in itertools.product(SHAPES, REDUCTIONS, BOOL, BOOL):
        for seed in SEEDS:
            with case(seed=seed, shape=shape, reduction=reduction, use_weight=use_weight, ignore=ignore):
                x, t, w = make(seed, shape, ignore=ignore)
                logp = F.log_softmax(x, cdim(shape))
                w = w if use_weight else None
                compare(lambda lp: nll_loss(lp, t, w, reduction),
                        lambda lp: F.nll_loss(lp, t, w, reduction=reduction), logp)

# ---------------------------------------------------------------------------------------- cross_entropy
def test_cross_entropy():
    "288 combinations of shape and options x 4 seeds of their own: about 1,150 different inputs in all."
    for shape, reduction, use_weight, smoothing, ignore in itertools.product(SHAPES, REDUCTIONS, BOOL, SMOOTHING, BOOL):
        base = 100 * (SHAPES.index(shape) * 48 + REDUCTIONS.index(reduction) * 16 + use_weight * 8
                      + SMOOTHING.index(smoothing) * 2 + ignore)
        for seed in range(base, base + 4):
            with case(seed=seed, shape=shape, reduction=reduction, use_weight=use_weight, smoothing=smoothing,
                      ignore=ignore):
                x, t, w = make(seed, shape, ignore=ignore)
                w = w if use_weight else None
                compare(lambda x: cross_entropy(x, t, w, reduction, smoothing),
                        lambda x: F.cross_entropy(x, t, w, reduction=reduction, label_smoothing=smoothing), x)

def test_cross_entropy_other_ignore_index():
    "`ignore_index` may be a valid class: its targets then count for nothing."
    x, t, w = make(3, (32, 4, 3))
    for ignore_index, red, ls in itertools.product([0, 2, -1], REDUCTIONS, [0., 0.2]):
        with case(ignore_index=ignore_index, reduction=red, smoothing=ls):
            compare(lambda x: cross_entropy(x, t, w, red, ls, ignore_index),
                    lambda x: F.cross_entropy(x, t, w, ignore_index=ignore_index, reduction=red, label_smoothing=ls),
                    x)

def test_integer_target_dtypes():
    "Any integer targets work (PyTorch takes only int64 and uint8) and give the int64 result."
    x, t, _ = make(1, (10, 6))
    for dtype in (torch.int32, torch.uint8, torch.int16):
        with case(dtype=dtype): check(cross_entropy(x, t.to(dtype)), F.cross_entropy(x, t))

def test_gradient_is_softmax_minus_onehot():
    for seed, (n, c) in itertools.product(SEEDS, [(6, 2), (16, 37)]):
        with case(seed=seed, shape=(n, c)):
            x, t, _ = make(seed, (n, c))
            _, g = run(lambda x: cross_entropy(x, t), x)
            check(g, (softmax(x) - torch.eye(c)[t]) / n)

def test_fastbook_example():
    "fastbook ch. 5: seed-42 6x2 activations, their per-item cross-entropy and its mean 1.8045."
    torch.random.manual_seed(42)
    acts = torch.randn((6, 2)) * 2
    targ = torch.tensor([0, 1, 0, 1, 1, 0])
    book = torch.tensor([0.5067, 0.6973, 2.0160, 5.6958, 0.9062, 1.0048])   # the book prints 4 decimals
    per_item, mean = cross_entropy(acts, targ, reduction='none'), cross_entropy(acts, targ).item()
    assert torch.allclose(per_item, book, rtol=0, atol=1e-4), f"{per_item} vs the book's {book}"
    assert mean == pytest.approx(1.8045, abs=1e-4), f"mean {mean} vs the book's 1.8045"

# ---------------------------------------------------------------------------------------- binary cross-entropy
def test_binary_cross_entropy():
    for shape, reduction, use_weight, use_pos_weight in itertools.product(SHAPES, REDUCTIONS, BOOL, BOOL):
        for seed in SEEDS:
            with case(seed=seed, shape=shape, reduction=reduction, use_weight=use_weight,
                      use_pos_weight=use_pos_weight):
                x, _, _ = make(seed, shape)
                g = torch.Generator().manual_seed(seed)
                t = torch.rand(shape, generator=g)
                if seed % 2: t = t.round()                                   # hard 0/1 labels for half the seeds
                w = torch.rand(shape, generator=g) if use_weight else None
                pw = torch.rand(shape[-1], generator=g) * 3 if use_pos_weight else None
                compare(lambda x: binary_cross_entropy(x, t, w, reduction, pw),
                        lambda x: F.binary_cross_entropy_with_logits(x, t, w, reduction=reduction, pos_weight=pw), x)

def test_binary_cross_entropy_gradient_at_zero():
    "At x=0 exactly the gradient is sigmoid(0)-t = 0.5-t (a max/abs formulation gets this wrong)."
    t = torch.tensor([0., 0.25, 1.])
    _, g = run(lambda x: binary_cross_entropy(x, t, reduction='sum'), torch.zeros(3))
    check(g, torch.tensor([0.5, 0.25, -0.5]))

# ---------------------------------------------------------------------------------------- huge logits
BIG_SHAPES = [(5,), (8, 5), (16, 37), (4, 3, 5)]

def test_huge_logits():
    "Logits of magnitude ~1e4 (exp overflows at 89): no inf/NaN, still equal to PyTorch."
    for seed, shape in itertools.product(range(4), BIG_SHAPES):
        with case(seed=seed, shape=shape):
            x, t, w = make(seed, shape, scale=1e4, ignore=True)
            d, g = cdim(shape), upstream(shape, seed)
            assert torch.exp(x).isinf().any()                              # the naive formulas would break
            compare(lambda x: softmax(x, d), lambda x: F.softmax(x, d), x, g)
            compare(lambda x: log_softmax(x, d), lambda x: F.log_softmax(x, d), x, g)
            compare(lambda x: logsumexp(x, d), lambda x: torch.logsumexp(x, d), x)
            for red, ww, ls in itertools.product(REDUCTIONS, [None, w], [0., 0.1]):
                compare(lambda x: cross_entropy(x, t, ww, red, ls),
                        lambda x: F.cross_entropy(x, t, ww, reduction=red, label_smoothing=ls), x)
            tb = torch.rand(shape, generator=torch.Generator().manual_seed(seed)).round()
            for red in REDUCTIONS:
                compare(lambda x: binary_cross_entropy(x, tb, reduction=red),
                        lambda x: F.binary_cross_entropy_with_logits(x, tb, reduction=red), x)

def test_extreme_float32_logits():
    "Logits near float32's limit (3e38): max subtraction keeps everything finite where PyTorch is."
    x = torch.tensor([[1.5e38, -1.5e38, 0.], [1e38, 1e38, -1e38]])
    t = torch.tensor([1, 0])
    check(log_softmax(x), F.log_softmax(x, 1))
    check(cross_entropy(x, t, reduction='none'), F.cross_entropy(x, t, reduction='none'))

# ---------------------------------------------------------------------------------------- float64
def test_float64():
    "float64 in, float64 out, equal to PyTorch to 1e-12."
    for shape in SHAPES:
        with case(shape=shape):
            x, t, w = make(5, shape, dtype=torch.float64, ignore=True)
            compare(lambda x: cross_entropy(x, t, w, 'mean', 0.1),
                    lambda x: F.cross_entropy(x, t, w, label_smoothing=0.1), x, tol=1e-12)
            compare(lambda x: log_softmax(x, cdim(shape)), lambda x: F.log_softmax(x, cdim(shape)), x,
                    upstream(shape, 5).double(), tol=1e-12)
            tb = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
            compare(lambda x: binary_cross_entropy(x, tb), lambda x: F.binary_cross_entropy_with_logits(x, tb), x,
                    tol=1e-12)

# ---------------------------------------------------------------------------------------- bad input
_x, _t, _w = make(0, (6, 3))
BAD = [
    ('target out of range', lambda: cross_entropy(_x, torch.tensor([0, 1, 2, 3, 0, 1])),
     IndexError, 'out of range for 3 classes'),
    ('negative target', lambda: cross_entropy(_x, torch.tensor([0, 1, -1, 2, 0, 1])),
     IndexError, 'target -1 is out of range'),
    ('nll target out of range', lambda: nll_loss(_x, torch.tensor([0, 1, 2, 9, 0, 1])), IndexError, 'target 9'),
    ('range in (N,C,d)', lambda: cross_entropy(torch.randn(2, 3, 4), torch.full((2, 4), 3)),
     IndexError, 'out of range'),
    ('unbatched range', lambda: cross_entropy(torch.randn(3), torch.tensor(3)), IndexError, 'out of range'),
    ('too few targets', lambda: cross_entropy(_x, _t[:4]),
     ValueError, 'target shape (4,) does not match input shape (6, 3)'),
    ('targets (N,1)', lambda: cross_entropy(_x, _t[:, None]), ValueError, 'expected (6,)'),
    ('one-hot shape', lambda: nll_loss(_x, torch.zeros(6, 3, dtype=torch.long)),
     ValueError, 'does not match input shape'),
    ('(N,C,d) target', lambda: cross_entropy(torch.randn(2, 3, 4), torch.zeros(2, 5, dtype=torch.long)),
     ValueError, 'expected (2, 4)'),
    ('float targets', lambda: cross_entropy(_x, _t.float()), ValueError, 'class indices'),
    ('float one-hot', lambda: cross_entropy(_x, F.one_hot(_t, 3).float()), ValueError, 'got dtype torch.float32'),
    ('bool targets', lambda: nll_loss(_x, _t > 0), ValueError, 'class indices'),
    ('integer input', lambda: cross_entropy(_t[:, None].repeat(1, 3), _t), ValueError, 'input must be a float tensor'),
    ('scalar input', lambda: cross_entropy(torch.tensor(1.), torch.tensor(0)), ValueError, 'class dimension'),
    ('list input', lambda: cross_entropy([[0., 1.]], torch.tensor([0])), TypeError, 'must be tensors'),
    ('weight size', lambda: cross_entropy(_x, _t, torch.ones(4)), ValueError, 'one value per class (3)'),
    ('weight 2D', lambda: nll_loss(_x, _t, torch.ones(1, 3)), ValueError, 'weight must be a 1D tensor'),
    ('reduction', lambda: cross_entropy(_x, _t, reduction='avg'), ValueError, "reduction must be"),
    ('smoothing > 1', lambda: cross_entropy(_x, _t, label_smoothing=1.5), ValueError, 'label_smoothing'),
    ('smoothing < 0', lambda: cross_entropy(_x, _t, label_smoothing=-0.1), ValueError, 'label_smoothing'),
    ('bce shape', lambda: binary_cross_entropy(_x, torch.rand(6)), ValueError, 'must equal input shape (6, 3)'),
    ('bce target > 1', lambda: binary_cross_entropy(_x, torch.full((6, 3), 2.)), ValueError, 'between 0 and 1'),
    ('bce reduction', lambda: binary_cross_entropy(_x, torch.rand(6, 3), reduction='mena'),
     ValueError, 'reduction must be'),
    ('bce int input', lambda: binary_cross_entropy(_t, _t.float()), ValueError, 'float tensor'),
]

def test_bad_input():
    "Each bad input raises the right exception with a message that says what is wrong."
    for name, f, exc, msg in BAD:
        with case(input=name):
            with pytest.raises(exc) as e: f()
            assert msg in str(e.value), f"message {str(e.value)!r} lacks {msg!r}"

def _fails(f):
    try: f()
    except AssertionError: return True
    return False

def test_tolerance_catches_formula_errors():
    "The tolerance is loose enough for float noise but not for small mistakes: each near-miss below must be caught."
    x, t, w = make(7, (16, 37), ignore=True)
    ref = lambda x: F.cross_entropy(x, t, w, label_smoothing=0.1)
    near_misses = {
        'smoothing 0.1 -> 0.101': lambda x: cross_entropy(x, t, w, label_smoothing=0.101),
        'divided by N, not by the total weight': lambda x: cross_entropy(x, t, w, 'sum', 0.1) / (t != -100).sum(),
        'logits off by 1e-3': lambda x: cross_entropy(x + 1e-3*torch.arange(37.), t, w, label_smoothing=0.1),
    }
    for name, wrong in near_misses.items():
        (ya, _), (yb, _) = run(wrong, x), run(ref, x)
        assert (ya - yb).abs().item() > 10*TOL, f"{name}: differs by only {(ya - yb).abs().item():.2e}"
        assert _fails(lambda: compare(wrong, ref, x)), f"{name} was not caught"
    compare(lambda x: cross_entropy(x, t, w, label_smoothing=0.1), ref, x)   # while the right formula passes

def test_ignored_targets_are_not_range_checked():
    x = torch.randn(4, 3)
    t = torch.tensor([0, -100, 2, -100])
    check(cross_entropy(x, t), F.cross_entropy(x, t))

# ---------------------------------------------------------------------------------------- summary
def test_summary_of_differences():
    "Largest differences from PyTorch over a grid of seeds/shapes/options (run with -s to see the table)."
    rows = {}
    def add(name, res):
        (va, vr), (ga, gr) = res
        o = rows.get(name, (0., 0., 0., 0.))
        rows[name] = (max(o[0], va), max(o[1], vr), max(o[2], ga), max(o[3], gr))
    for seed, shape, scale in itertools.product(range(3), SHAPES, [3., 1e4]):
        x, t, w = make(seed, shape, scale=scale, ignore=True)
        d, g, tag = cdim(shape), upstream(shape, seed), f" |x|~{scale:g}"
        add('softmax' + tag, compare(lambda x: softmax(x, d), lambda x: F.softmax(x, d), x, g))
        add('log_softmax' + tag, compare(lambda x: log_softmax(x, d), lambda x: F.log_softmax(x, d), x, g))
        for red, ww, ls in itertools.product(REDUCTIONS, [None, w], [0., 0.1, 0.5]):
            add('cross_entropy' + tag,
                compare(lambda x: cross_entropy(x, t, ww, red, ls),
                        lambda x: F.cross_entropy(x, t, ww, reduction=red, label_smoothing=ls), x))
            if ls == 0:
                lp = F.log_softmax(x, d)
                add('nll_loss' + tag, compare(lambda lp: nll_loss(lp, t, ww, red),
                                              lambda lp: F.nll_loss(lp, t, ww, reduction=red), lp))
        tb = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
        for red in REDUCTIONS:
            add('binary_cross_entropy' + tag,
                compare(lambda x: binary_cross_entropy(x, tb, reduction=red),
                        lambda x: F.binary_cross_entropy_with_logits(x, tb, reduction=red), x))
    print(f"\n{'float32, vs PyTorch':32s} {'value abs':>10s} {'value rel':>10s} {'grad abs':>10s} {'grad rel':>10s}")
    for k, v in rows.items(): print(f"{k:32s} " + ' '.join(f'{o:10.2e}' for o in v))
    assert max(max(v[1], v[3]) for v in rows.values()) <= TOL
