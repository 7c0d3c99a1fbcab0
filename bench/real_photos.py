"""Real photos: a linear probe on frozen pretrained features vs the tool's default recipe vs variants.

For any ImageFolder-style folder (train/ + val/ or valid/ [+ test/], read by the tool's own `find_layout`),
prints a markdown table: for each recipe, the held-out accuracy (test/ if the folder has one, else the
validation set) over several seeds as mean, spread and min-max, and the seconds it took (wall clock and
process CPU time, which is less sensitive to other jobs on a shared machine).

  linear probe   sklearn `LogisticRegression` (standardised features, C by 5-fold CV on train/) on the pooled
                 features of the frozen pretrained EfficientNet-Lite0 (ImageNet weights), 224 px centre crop
  default        `imgcls_course.cli.train` with its default `Recipe` (what `imgcls-course train FOLDER` does)
  others         the same `train` with one or more settings of the `Recipe` changed (see VARIANTS)

    python bench/real_photos.py FOLDER                          # linear probe + default, seeds 0 1 2
    python bench/real_photos.py FOLDER --variants default,size224,tta --seeds 0,1,2,3,4
    python bench/real_photos.py FOLDER --json runs.json         # keep every run; rerun to resume
    python bench/get_real_photos.py                             # builds the eight sets used in results/
    python bench/real_photos.py --across-sets --json bench/results/real_photos_budget.json   # all sets, vs the probe

Results measured in this project: bench/results/real_photos.md.
"""
import argparse, json, os, platform, resource, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
from imgcls_course.data import atomic_path
from imgcls_course.folder import scan_folder, FolderError
from imgcls_course.cli import Recipe, train

# settings of the `Recipe` that each variant changes
OLD_DEFAULT = dict(size=128, epochs=3, freeze_epochs=1, lr=None, head='fastai', tta=False)   # before this benchmark
PROBE = dict(OLD_DEFAULT, size=224, lr=2e-3, head='probe', freeze_epochs=0, keep_probe=False)   # probe head, no keeping
VARIANTS = {
    'default': {},
    'finetune_always': dict(keep_probe=False),   # the default before it could keep the probe: always fine-tuned
    'finetune_always_lr5e-4': dict(keep_probe=False, lr=5e-4),   # a gentler fine-tuning of the probe-initialised model
    'default_course': dict(presize='course'),   # the default with the course's presizing instead of fastai's
    'old_default': OLD_DEFAULT,
    'size_auto': dict(OLD_DEFAULT, size=0),
    'size224': dict(OLD_DEFAULT, size=224),
    'size224_lr2e-3': dict(OLD_DEFAULT, size=224, lr=2e-3),
    'size224_lr1e-3': dict(OLD_DEFAULT, size=224, lr=1e-3),
    'size224_lr4e-3': dict(OLD_DEFAULT, size=224, lr=4e-3),
    'size224_e2': dict(OLD_DEFAULT, size=224, lr=2e-3, epochs=2),
    'size224_e4': dict(OLD_DEFAULT, size=224, lr=2e-3, epochs=4),
    'size224_f2': dict(OLD_DEFAULT, size=224, lr=2e-3, freeze_epochs=2),
    'size224_ls': dict(OLD_DEFAULT, size=224, lr=2e-3, label_smoothing=0.1),
    'size224_tta': dict(OLD_DEFAULT, size=224, lr=2e-3, tta=True),
    'size224_course': dict(OLD_DEFAULT, size=224, lr=2e-3, presize='course'),
    'size224_probe': PROBE,
    'size224_probe_e4': dict(PROBE, epochs=4),
    'size224_probe_tta': dict(PROBE, tta=True),
    'size224_probe_tta_course': dict(PROBE, tta=True, presize='course'),
    'size160': dict(OLD_DEFAULT, size=160, lr=2e-3),
    'size192': dict(OLD_DEFAULT, size=192, lr=2e-3),
    'lite1_probe_tta': dict(PROBE, size=240, tta=True, arch='efficientnet_lite1'),   # names of `models.ARCHS`, each
    'lite2_probe_tta': dict(PROBE, size=260, tta=True, arch='efficientnet_lite2'),   # at the size it was trained at
}

def _cpu(): r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime

def linear_probe(folder, size=224, bs=32):
    "Held-out and validation accuracy of a logistic regression on frozen, pooled EfficientNet-Lite0 features."
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from imgcls_course.models import efficientnet_lite0, imagenet_tensor
    t0, c0 = time.time(), _cpu()
    scan = scan_folder(folder, show_progress=False)
    if not scan.parts or scan.parts['valid'] is None:
        raise FolderError(f"{folder}: need train/ + val/ (or valid/ or test/) folders")
    m = efficientnet_lite0().eval()
    feats = []
    with torch.no_grad():
        for i in range(0, len(scan.files), bs):
            x = torch.cat([imagenet_tensor(Image.open(f), size) for f in scan.files[i:i+bs]])
            feats.append(m.forward_head(m.forward_features(x), pre_logits=True))
    X, y, s = torch.cat(feats).numpy(), np.array(scan.labels), np.array(scan.splits)
    clf = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                       {'logisticregression__C': np.logspace(-3, 2, 11)}, cv=5).fit(X[s == 'train'], y[s == 'train'])
    acc = {k: float(clf.score(X[s == k], y[s == k])) for k in ('valid', 'test') if (s == k).any()}
    return dict(valid_accuracy=acc['valid'], test_accuracy=acc.get('test'), seconds=time.time()-t0,
                cpu_seconds=_cpu()-c0, C=float(clf.best_params_['logisticregression__C']),
                **{f'n_{k}': int((s == k).sum()) for k in ('train', 'valid', 'test')})

_KEPT = ('valid_accuracy', 'test_accuracy', 'valid_accuracy_no_tta', 'test_accuracy_no_tta', 'lr', 'size',
         'n_train', 'n_valid', 'n_test', 'probe_valid_accuracy', 'probe_test_accuracy',
         'arch', 'epochs', 'kept', 'budget')   # of `TrainResults.metrics()`

def run_variant(folder, settings, seed):
    "One `train` run with the `Recipe` changed by `settings`: its metrics plus wall and CPU seconds."
    with tempfile.TemporaryDirectory() as out:
        t0, c0 = time.time(), _cpu()
        m = train(folder, out=out, recipe=Recipe(**settings, seed=seed), quiet=True).metrics()
        return dict({k: m.get(k) for k in _KEPT}, seconds=time.time()-t0, cpu_seconds=_cpu()-c0,
                    estimated_seconds=(m.get('plan') or {}).get('seconds'))

def _held(r, tta=True):
    "Accuracy on test/ if the folder has one, else on the validation set; with TTA if the run used it and `tta`."
    k = 'test_accuracy' if r.get('test_accuracy') is not None else 'valid_accuracy'
    return r[k] if tta else r.get(k + '_no_tta', r[k])

def _settings(kw):
    if not kw: return 'the tool as shipped'
    show = lambda k, v: 'finder' if (k == 'lr' and v is None) else 'auto' if (k == 'size' and v == 0) else v
    return ', '.join(f"{k}={show(k, v)}" for k, v in kw.items())

def _row(recipe, settings, h, va=None, rs=None, deterministic=False):
    "One row of `table_df`: held-out accuracies `h` over seeds, validation accuracies `va`, the runs `rs` for seconds."
    sd = statistics.stdev(h) if len(h) > 1 else float('nan')
    return {'recipe': recipe, 'settings': settings, 'held-out mean': statistics.mean(h), 'held-out SD': sd,
            'min': min(h), 'max': max(h), 'seeds': len(h), 'deterministic': deterministic,
            'validation mean': statistics.mean(va) if va else float('nan'),
            'wall s': statistics.mean(r['seconds'] for r in rs) if rs else float('nan'),
            'CPU s': statistics.mean(r['cpu_seconds'] for r in rs) if rs else float('nan')}

def table_df(runs, seeds, names):
    "The runs as a DataFrame: one row per recipe, the held-out accuracy over seeds (mean, SD, min, max), seconds."
    import pandas as pd
    lp, rows = runs.get('linear_probe', {}).get('0'), []
    if lp: rows.append(_row('linear probe', f"LogisticRegression (C={lp['C']:g}) on frozen Lite0 features, 224 px",
                            [_held(lp)], [lp['valid_accuracy']], [lp], deterministic=True))
    for n in names:
        rs = [r for r in (runs.get(n, {}).get(str(s)) for s in seeds) if r]
        if not rs: continue
        for tta in ((True, False) if VARIANTS[n].get('tta') else (True,)):
            label, sets = ((n, _settings(VARIANTS[n])) if tta
                           else (f"{n}, without TTA", "the same runs, plain predictions"))
            va = [r['valid_accuracy'] if tta else r.get('valid_accuracy_no_tta', r['valid_accuracy']) for r in rs]
            rows.append(_row(label, sets, [_held(r, tta) for r in rs], va, rs))
        pr = [r for r in rs if r.get('probe_valid_accuracy') is not None]
        if pr:   # the same runs, measured after the probe head was fitted and before fine-tuning: side by side
            k = 'probe_test_accuracy' if pr[0].get('probe_test_accuracy') is not None else 'probe_valid_accuracy'
            rows.append(_row(f"{n}: its probe head, before fine-tuning",
                             "the same runs, `probe_head` (LogisticRegression, C by CV)",
                             [r[k] for r in pr], [r['probe_valid_accuracy'] for r in pr]))
    return pd.DataFrame(rows).set_index('recipe')

def table(folder, runs, seeds, names):
    "Markdown table of the runs (`table_df`): one row per recipe, accuracy as mean ± std (min-max) over seeds."
    lp = runs.get('linear_probe', {}).get('0')
    any_r = lp or next((r for v in runs.values() for r in v.values()), None)
    held = 'test' if any_r and any_r.get('test_accuracy') is not None else 'validation'
    rows = [f"| recipe | settings | held-out ({held}) accuracy, mean ± std | min-max | seeds | "
            "validation accuracy, mean | wall s, mean | CPU s, mean |",
            "|---|---|---|---|---|---|---|---|"]
    fmt = lambda x: '' if x != x else f"{x:.0f}"   # NaN: no seconds for this row
    for recipe, r in table_df(runs, seeds, names).iterrows():
        acc = (f"{r['held-out mean']:.1%}"
               + (" (deterministic)" if r['deterministic'] else f" ± {r['held-out SD']:.1%}" if r['seeds'] > 1
                  else " (one seed)" if 'probe head' in recipe else " (one seed: no spread)"))
        rng = '' if r['deterministic'] else f"{r['min']:.1%}-{r['max']:.1%}"
        rows.append(f"| {recipe} | {r['settings']} | {acc} | {rng} | {r['seeds']} | {r['validation mean']:.1%} | "
                    f"{fmt(r['wall s'])} | {fmt(r['CPU s'])} |")
    return '\n'.join(rows)

def across_sets(kept:dict, variant:str='default', seeds=range(10)):
    "Per set, `variant` over seeds against the Lite0 linear probe, what the budget chose and the seconds; a DataFrame."
    import pandas as pd
    rows = {}
    for name, runs in kept.items():
        lp = runs.get('linear_probe', {}).get('0')
        rs = [r for r in (runs.get(variant, {}).get(str(s)) for s in seeds) if r]
        if not (lp and rs): continue
        h = [round(_held(r), 6) for r in rs]   # float32 accuracies: 0.98 is 0.9800000190734863
        chosen = sorted({(r['arch'], r['size'], r['epochs']) for r in rs})
        rows[name] = {'held-out images': rs[0]['n_test'] or rs[0]['n_valid'], 'Lite0 probe': round(_held(lp), 6),
                      'default': statistics.mean(h), 'default SD': statistics.stdev(h) if len(h) > 1 else float('nan'),
                      'seeds': len(h), 'gap (points)': 100*(statistics.mean(h) - _held(lp)),
                      'chosen': '; '.join(f"{a.removeprefix('efficientnet_')} {z} px, {e} ep" for a, z, e in chosen),
                      'probe kept': sum(r['kept'] == 'linear probe' for r in rs),
                      'wall s': statistics.mean(r['seconds'] for r in rs), 'wall s max': max(r['seconds'] for r in rs),
                      'estimated s': statistics.mean(r['estimated_seconds'] for r in rs)}
    return pd.DataFrame.from_dict(rows, orient='index')

def across_table(df)->str:
    "`across_sets` as markdown, with the mean gap over the sets and its standard error."
    from imgcls_course.evidence import paired_gap
    rows = ["| set | held-out images | Lite0 probe | default, mean ± SD | seeds | gap (points) | chosen | probe kept | "
            "wall s, mean (max) | estimated s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for k, r in df.iterrows():
        rows.append(f"| {k} | {r['held-out images']} | {r['Lite0 probe']:.1%} | "
                    f"{r['default']:.1%} ± {r['default SD']:.1%} | {r['seeds']} | {r['gap (points)']:+.1f} | "
                    f"{r['chosen']} | {r['probe kept']} of {r['seeds']} | "
                    f"{r['wall s']:.0f} ({r['wall s max']:.0f}) | {r['estimated s']:.0f} |")
    g = paired_gap(df['default'].values*100, df['Lite0 probe'].values*100, min_seeds=4)
    return '\n'.join(rows) + (f"\n\nOver the {g['n']} sets: gap {g['mean']:+.2f} points, SD {g['std']:.2f}, "
                              f"standard error {g['se']:.2f} (mean / s.e. = {g['mean']/g['se']:.1f}); "
                              f"{g['up']} up, {g['down']} down, {g['tied']} tied: {g['verdict']}")

def describe(name:str, runs:dict)->str:
    "One line naming the set, its split sizes (from the runs) and what one held-out image is worth."
    r = next(r for v in runs.values() for r in v.values())
    n_held = r['n_test'] or r['n_valid']
    return (f"**{name}**: {r['n_train']} train, {r['n_valid']} validation"
            + (f", {r['n_test']} test" if r['n_test'] else '')
            + f" images; held-out = {'test' if r['n_test'] else 'validation'} ({n_held} images: one is {1/n_held:.1%})")

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('folder', nargs='?', help='an image folder (not needed with --across-sets)')
    p.add_argument('--variants', default='default', help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument('--seeds', default='0,1,2')
    p.add_argument('--no-probe', action='store_true', help='skip the linear probe')
    p.add_argument('--table-only', action='store_true', help='print the table of the runs kept in --json; run nothing')
    p.add_argument('--across-sets', action='store_true',
                   help='print the default against the Lite0 probe on every set kept in --json; run nothing')
    p.add_argument('--json', default=None,
                   help='file keeping every run, by folder name (read first: runs already there are not repeated)')
    a = p.parse_args(argv)
    if a.across_sets:
        if not (a.json and Path(a.json).exists()): p.error('--across-sets reads the runs kept in --json FILE')
        print(across_table(across_sets(json.loads(Path(a.json).read_text())))); return 0
    if not a.folder: p.error('the folder is required')
    folder, seeds, names = Path(a.folder).expanduser(), [int(s) for s in a.seeds.split(',')], a.variants.split(',')
    bad = [n for n in names if n not in VARIANTS]
    if bad: p.error(f"unknown variants: {', '.join(bad)}")
    store = Path(a.json) if a.json else None
    kept = json.loads(store.read_text()) if store and store.exists() else {}
    runs = kept.setdefault(folder.name, {})   # one file can keep the runs of several folders
    def save():
        if not store: return
        with atomic_path(store) as t: t.write_text(json.dumps(kept, indent=1))
    load0 = os.getloadavg()
    try:
        if a.table_only: pass
        elif not a.no_probe and '0' not in runs.get('linear_probe', {}):
            runs.setdefault('linear_probe', {})['0'] = linear_probe(folder); save()
        for n in ([] if a.table_only else names):
            for s in seeds:
                if str(s) in runs.get(n, {}): continue
                r = run_variant(folder, VARIANTS[n], s); r['load'] = os.getloadavg()[0]
                runs.setdefault(n, {})[str(s)] = r; save()
                print(f"  {n} seed {s}: held-out {_held(r):.1%}, {r['seconds']:.0f} s wall, "
                      f"{r['cpu_seconds']:.0f} s CPU", file=sys.stderr, flush=True)
    except FolderError as e:
        print(f"real_photos: error: {e}", file=sys.stderr); return 2
    scan = scan_folder(folder, show_progress=False)
    n = scan.split_counts()
    loads = [r['load'] for v in names for s in seeds if (r := runs.get(v, {}).get(str(s))) and 'load' in r]
    print(f"**{folder.name}**: {', '.join(f'{n[k]} {k}' for k in ('train', 'valid', 'test') if n[k])} images, "
          f"classes {', '.join(f'{c} ({k})' for c, k in sorted(scan.counts.items()))}; "
          f"torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
          + (f"1-min load average after each run {min(loads):.1f}-{max(loads):.1f}" if loads else "")
          + ("" if a.table_only else f" (at the start of this run {load0[0]:.1f})") + "\n")
    print(table(folder, runs, seeds, names))
    return 0

if __name__ == '__main__': sys.exit(main())
