("Interpretation: confusion matrix and most_confused equal to scikit-learn and fastai's ClassificationInterpretation; "
 "top losses; bad inputs.")
import warnings
import numpy as np, pytest, torch
warnings.filterwarnings('ignore', category=FutureWarning)
import matplotlib; matplotlib.use('Agg')
from sklearn.metrics import confusion_matrix as sk_cm
from fastai.interpret import ClassificationInterpretation
from conftest import case
from imgcls_course.interpret import confusion_matrix, most_confused, plot_confusion, top_losses, plot_top_losses

def _data(seed, n=300, c=7):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c, n)
    p = np.where(rng.random(n) < 0.6, t, rng.integers(0, c, n))   # mostly right, some confusions
    return t, p, c

def test_confusion_matrix_equals_sklearn():
    for seed in range(10):
        with case(seed=seed):
            t, p, c = _data(seed, n=int(np.random.default_rng(seed).integers(1, 400)))
            assert np.array_equal(confusion_matrix(t, p, c), sk_cm(t, p, labels=range(c)))
            assert np.array_equal(confusion_matrix(torch.tensor(t), torch.tensor(p), c), sk_cm(t, p, labels=range(c)))

class _FakeLearn:
    "Just enough of a Learner for `ClassificationInterpretation.confusion_matrix`."
    def __init__(self, probs, targs): self.probs, self.targs = probs, targs
    def get_preds(self, **kwargs): return self.probs, self.targs, self.probs.argmax(1)

class _FakeDL:
    def __init__(self, vocab): self.vocab = vocab

def test_equal_to_fastai():
    for seed in range(6):
        with case(seed=seed):
            rng = np.random.default_rng(seed)
            c = int(rng.integers(2, 9)); n = 200
            probs = torch.softmax(torch.from_numpy(rng.normal(0, 2, (n, c))).float(), 1)
            targs = torch.from_numpy(rng.integers(0, c, n))
            vocab = [f'class_{i}' for i in range(c)]
            # (fastai takes vocab[-1] of a listy vocab)
            interp = ClassificationInterpretation(_FakeLearn(probs, targs), _FakeDL([vocab]), torch.zeros(n))
            cm = confusion_matrix(targs, probs.argmax(1), c)
            assert np.array_equal(cm, interp.confusion_matrix())
            for mv in (1, 2, 5, 20):
                ours = most_confused(cm, vocab, min_val=mv)
                ref = [(a, b, int(k)) for a, b, k in interp.most_confused(min_val=mv)]
                assert ours == ref, mv                                     # same order, ties included

def test_most_confused_ties_and_diagonal():
    cm = np.array([[9, 1, 2], [2, 9, 0], [0, 2, 9]])
    assert most_confused(cm, list('abc')) == [('a', 'c', 2), ('b', 'a', 2), ('c', 'b', 2), ('a', 'b', 1)]
    assert most_confused(cm, list('abc'), min_val=3) == []
    assert cm[0, 0] == 9                                           # the input is not modified
    with pytest.raises(ValueError, match='vocab'): most_confused(cm, list('ab'))

def test_bad_inputs():
    with pytest.raises(ValueError, match='outside'): confusion_matrix([0, 5], [0, 1], 3)
    with pytest.raises(ValueError, match='outside'): confusion_matrix([0, 1], [-1, 1], 3)
    with pytest.raises(ValueError, match='length'): confusion_matrix([0, 1, 1], [0, 1], 3)
    with pytest.raises(ValueError, match='one-dimensional'): confusion_matrix([0, 1], np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match='integers'): confusion_matrix([0, 1], [0.5, 1.0], 3)
    assert confusion_matrix(np.array([0., 2.]), [0, 2], 3)[2, 2] == 1   # integral floats are fine

def test_plot_confusion():
    import matplotlib.pyplot as plt
    t, p, c = _data(0)
    cm = confusion_matrix(t, p, c)
    for normalize in (True, False):
        with case(normalize=normalize):
            fig = plot_confusion(cm, [str(i) for i in range(c)], normalize=normalize)
            shown = fig.axes[0].images[0].get_array()
            if normalize: assert np.allclose(shown.sum(1), 1)
            else: assert np.array_equal(shown, cm)
            assert fig.axes[0].get_ylabel() == 'Actual'
            plt.close(fig)

def test_top_losses():
    rng = np.random.default_rng(0)
    losses = torch.from_numpy(rng.random(50)).float()
    v, i = top_losses(losses, 5)
    assert torch.equal(i, torch.argsort(losses, descending=True)[:5])
    v, i = top_losses(losses, 3, largest=False)
    assert torch.equal(i, torch.argsort(losses)[:3])
    assert len(top_losses(losses)[0]) == 50 and len(top_losses(losses, 80)[0]) == 50
    probs = torch.softmax(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)), 1)
    targs = torch.randint(0, 4, (50,), generator=torch.Generator().manual_seed(1))
    imgs = [torch.rand(3, 8, 8) for _ in range(50)]
    fig = plot_top_losses(imgs, probs, targs, losses, list('abcd'), k=4, ncols=2)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    k = int(top_losses(losses, 1)[1][0])
    assert len(titles) == 4 and titles[0].startswith(f"{'abcd'[int(probs[k].argmax())]}/{'abcd'[int(targs[k])]}\n")
    with pytest.raises(ValueError, match='same length'): plot_top_losses(imgs[:3], probs, targs, losses, list('abcd'))
    import matplotlib.pyplot as plt; plt.close('all')
