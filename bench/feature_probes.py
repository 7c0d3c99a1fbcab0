"""Linear probes on each offline backbone's frozen features, alone and concatenated, with and without the mirror.

The measurement behind the tool's time budget (nbs/70c_budget.ipynb): how much a larger backbone's features are
worth before any fine-tuning. For each set built by `bench/get_real_photos.py`, each of EfficientNet-Lite0/1/2
(ImageNet weights, each at the size it was trained at, centre crop) gives pooled features of every image and of its
left-right mirror (cached); a logistic regression (standardised features, C by 5-fold CV on train/) is fitted on

  plain     the features of the images
  mirror    the mean of the features of each image and of its mirror (train and evaluation alike)
  mirror+   the training images and their mirrors as twice the examples; evaluated on the mean of the two predictions

for each backbone alone, Lite0 + Lite2, and all three concatenated. Prints one markdown table per set: validation
and held-out accuracy (test/ where the set has one). Deterministic: no seed changes these numbers on one machine.

    python bench/feature_probes.py                       # every set under ~/.cache/imgcls_course/real_sets
    python bench/feature_probes.py --sets food10,monkeys10

The tables are kept in bench/results/real_photos.md; `printed_acc` reads a number back from them.
"""
import argparse, re, sys, time, warnings
from pathlib import Path
import numpy as np, torch
from PIL import Image
from threadpoolctl import threadpool_limits
from imgcls_course.folder import scan_folder
from imgcls_course.models import ARCHS, imagenet_tensor
from imgcls_course.budget import BACKBONES

ROOT = Path.home()/'.cache'/'imgcls_course'
COMBOS = {'lite0': ['efficientnet_lite0'], 'lite1': ['efficientnet_lite1'], 'lite2': ['efficientnet_lite2'],
          'lite0+2': ['efficientnet_lite0', 'efficientnet_lite2'], 'all three': list(reversed(BACKBONES))}

def features(folder:Path, arch:str, cache:Path, bs:int=32)->dict:
    "Pooled features of every image of `folder` and of its mirror, by `arch` at its own size; cached in `cache`."
    f = cache/f'{folder.name}_{arch}.npz'
    if not f.exists():
        scan, t0 = scan_folder(folder, show_progress=False), time.time()
        m, size = ARCHS[arch]().eval().to(memory_format=torch.channels_last), BACKBONES[arch]
        X, Xm = [], []
        with torch.inference_mode():
            for i in range(0, len(scan.files), bs):
                x = torch.cat([imagenet_tensor(Image.open(p), size) for p in scan.files[i:i+bs]])
                for out, xx in ((X, x), (Xm, x.flip(3))):
                    out.append(m.forward_head(m.forward_features(xx.contiguous(memory_format=torch.channels_last)),
                                              pre_logits=True))
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, X=torch.cat(X).numpy(), Xf=torch.cat(Xm).numpy(), y=np.array(scan.labels),
                 s=np.array(scan.splits))
        print(f"  {folder.name} {arch}: features in {time.time()-t0:.0f} s", file=sys.stderr, flush=True)
    return dict(np.load(f))

def probe(X, Xm, y, s, mode:str)->dict:
    "Validation and held-out accuracy of the CV-tuned logistic regression on features `X` (mirrored: `Xm`)."
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    tr = s == 'train'
    if mode == 'plain': Xtr, ytr, Xe = X[tr], y[tr], X
    elif mode == 'mirror': Xtr, ytr, Xe = (X[tr] + Xm[tr])/2, y[tr], (X + Xm)/2
    else: Xtr, ytr, Xe = np.concatenate([X[tr], Xm[tr]]), np.concatenate([y[tr], y[tr]]), None
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter('ignore')
        clf = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
                           {'logisticregression__C': np.logspace(-3, 2, 11)}, cv=5).fit(Xtr, ytr)
        P = clf.predict_proba(Xe) if Xe is not None else (clf.predict_proba(X) + clf.predict_proba(Xm))/2
    pred, held = clf.classes_[P.argmax(1)], 'test' if (s == 'test').any() else 'valid'
    return dict(valid=float((pred[s == 'valid'] == y[s == 'valid']).mean()),
                held=float((pred[s == held] == y[s == held]).mean()), held_name=held)

def printed_acc(text:str, name:str, feats:str)->float:
    "The plain probe's held-out accuracy (%) of `feats` on set `name`, read back from tables `main` printed in `text`."
    m = re.search(rf"\*\*{re.escape(name)}\*\*: \d+ train; held-out.*?\n\| {re.escape(feats)} \| ([\d.]+)%", text, re.S)
    if m is None: raise KeyError(f"no {feats} row for {name} in the feature-probe tables")
    return float(m.group(1))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sets', default=None, help='comma-separated set names (default: every set built)')
    p.add_argument('--root', default=str(ROOT/'real_sets'), help='where bench/get_real_photos.py built the sets')
    p.add_argument('--cache', default=str(ROOT/'feature_probes'), help='where the features are kept')
    a = p.parse_args(argv)
    root = Path(a.root).expanduser()
    names = a.sets.split(',') if a.sets else sorted(d.name for d in root.iterdir() if (d/'train').is_dir())
    for name in names:
        F = {arch: features(root/name, arch, Path(a.cache).expanduser()) for arch in BACKBONES}
        y, s = F['efficientnet_lite0']['y'], F['efficientnet_lite0']['s']
        rows, held = [], None
        for combo, archs in COMBOS.items():
            X = np.concatenate([F[k]['X'] for k in archs], 1); Xm = np.concatenate([F[k]['Xf'] for k in archs], 1)
            r = {mode: probe(X, Xm, y, s, mode) for mode in ('plain', 'mirror', 'mirror+')}
            held = r['plain']['held_name']
            rows.append(f"| {combo} | " + ' | '.join(f"{r[m]['held']:.1%} ({r[m]['valid']:.1%})"
                                                    for m in ('plain', 'mirror', 'mirror+')) + ' |')
        n_held = int((s == held).sum())
        print(f"**{name}**: {int((s == 'train').sum())} train; held-out = {held} ({n_held} images: one is "
              f"{1/n_held:.1%}); held-out accuracy (validation accuracy)\n")
        print("| features | plain | mirror | mirror+ |\n|---|---|---|---|\n" + '\n'.join(rows) + '\n', flush=True)
    return 0

if __name__ == '__main__': sys.exit(main())
