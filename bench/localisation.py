"""A fair localisation test for Grad-CAM (issue 14, item 1): pets anywhere in the frame, not in the middle.

The course's synthetic pets always sit in the central square, so a map that only ever points at the middle
(a centre prior) wins the pointing game by construction. Here fine-tuned pets models are shown *fresh*
off-centre pets, `make_pets(..., placement='anywhere')` with the generator seed `EVAL_SEED + s` (never a
training image), and these maps are scored against the true boxes with the Grad-CAM lesson's own functions
(`cam_eval`, the deep dive `43_cam_evaluation`: `pets_localisation`, `localisation_scores`, `centre_prior`,
`random_map`):

- grad-cam: the map of the image's actual class at the model's last spatial layer (or `--layer`, `--method`),
  resized to the image the way pytorch-grad-cam does (each cell at the middle of its 32-px block);
- grad-cam, aligned: the same map resized with each cell at the geometric centre of its receptive field
  (`cam_eval.aligned_cam`, `cell_grid`): 15.5 px up and left of the block's middle for Lite0 (symmetric padding;
  the field itself is about 850 px wide, so this is a convention whose gain is measured here, not derived);
- centre prior: a Gaussian bump in the middle of the image, the same for every image;
- random map: uniform noise on a grid as coarse as the CAM's, upsampled like it (a new one per image).

Map sizes: Lite0's last map has one cell per 32 px, so 320, 256, 224 and 160 px give 10, 8, 7 and 5 cells a side.
With an even number of cells the aligned grid has a cell on the image centre and the usual resize does not; with
an odd number it is the other way round, so both kinds are scored (the setting names the map's size).

The models: by default (`--placement anywhere --train-size 256 --sizes 320 256 224 160`, table in
`results/localisation.md`) five models fine-tuned on 1,000 off-centre pets at 256 px
(`trained_pets_learner(seed=s, size=256, placement='anywhere')`, trained and cached on first use: 6 to 13 minutes
each on 2 cores); with `--placement centre --train-size 128` (default sizes 128 160 192 224 256;
`results/localisation_centred.md`) the cached models of the course (`trained_pets_learner(seed=s)`, fine-tuned at
128 px on centred pets).

Metrics, per image and then averaged over the images of one seed:
- pointing game %: the map's maximum lies inside the true box (no tolerance);
- energy ratio: the map's share inside the box divided by the box's share of the image (1 = no better than
  uniform);
- box loc. error %: the box around the largest blob of `map >= 0.15 * max` has IoU < 0.5 with the true box
  (the Grad-CAM paper's protocol; lower is better).
The table shows mean ± std over the model seeds (and the range), one seed = one model and its own `--n`
fresh images (120 by default); the rows per seed go to a CSV beside the table. Below it, per setting, the paired
gaps over the seeds (`evidence.paired_gap`): each map minus the centre prior, and aligned minus the usual resize.
The last line printed is `pointing game: grad-cam X %, centre prior Y %` for the main setting (the first size, the
last spatial layer), with the aligned map.

Choices were made on other images (`--eval-seed 20000`, model seed 42, 100 images; 2026-12-04, 2 cores), not on
the reported ones. Models fine-tuned on centred pets at 128 px: Grad-CAM at an earlier block (`--layer 0.2.4`,
8x8 at 128 px) 37 % against 32 % at the last layer; `--sizes 256` 79 %, `320` 86 % (accuracy down to 60 %).
Model fine-tuned on off-centre pets at 128 px: 31 % at 128 px (aligned 45 %), 84 % at 256 px. Model fine-tuned
on off-centre pets at 256 px, pointing game block-centred / aligned: 43 / 71 % at 192 px, 70 / 86 % at 256 px,
87 / 96 % at 320 px, 91 / 97 % at 384 px (accuracy 86, 91, 89, 91 %); LayerCAM at `0.2.4`, block-centred:
92 % at 256 px, 88 % at 320 px. Hence the main setting: fine-tuned on off-centre pets at 256 px, scored at 320 px.

Usage: python bench/localisation.py [--placement centre --train-size 128] [--sizes 320 256 224 160] [--seeds 42 1 2 3 4]
       [--n 120] [--layer 0.2.4 --method layercam]
"""
import argparse, platform, sys, tempfile, time, types, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch

EVAL_SEED = 10_000   # eval images of model seed s come from generator seed EVAL_SEED + s; models train on seed s
METRICS = ['pointing game %', 'energy ratio', 'box loc. error %']
MAPS = ['grad-cam', 'centre prior', 'random map']
CAM_NAMES = {'gradcam': 'grad-cam', 'hirescam': 'hirescam', 'layercam': 'layercam', 'gradcam++': 'grad-cam++'}

def cached_seeds(want:int=5, prefer=(42, 1, 2, 3, 4, 5, 6, 7), size:int=128, placement:str='centre'):
    "Model seeds whose fine-tuned pets model is cached already (trained ones first), at least 3."
    from imgcls_course.pets_model import pets_model_file
    have = [s for s in prefer if pets_model_file(seed=s, size=size, placement=placement).exists()]
    return (have + [s for s in prefer if s not in have])[:max(3, min(want, len(have)))]

def eval_pets(dest, seed:int, n:int=120, eval_seed:int=EVAL_SEED):
    "Fresh off-centre pets (generator seed `eval_seed + seed`) in `dest`: `(image files, boxes)`."
    from imgcls_course.data import make_pets, load_boxes
    p = make_pets(Path(dest)/f'anywhere_s{eval_seed + seed}', n=n, seed=eval_seed + seed, placement='anywhere',
                  show_progress=False)
    return sorted((p/'images').iterdir()), load_boxes(p)

def score_maps(learn, files, boxes, size:int=128, layer=None, seed:int=0, method:str='gradcam')->list:
    ("Rows `{setting, map, metrics..., accuracy %}` for Grad-CAM (or `method`), the centre prior and a random map "
     "on `files`.")
    from imgcls_course.cam_eval import pets_localisation, localisation_scores, centre_prior, random_map
    # `pets_localisation` reads the images and classes from `learn.dls.valid`: point it at the fresh images
    view = types.SimpleNamespace(model=learn.model, dls=types.SimpleNamespace(
        valid=types.SimpleNamespace(items=list(files)), vocab=learn.dls.vocab))
    lay = None if layer is None else learn.model.get_submodule(layer)
    r = pets_localisation(view, boxes, size=size, layer=lay, method=method)
    # cells at their receptive fields' centres
    ra = pets_localisation(view, boxes, size=size, layer=lay, method=method, align=True)
    cells = _map_side(learn.model, r['x'][:1], lay)   # a random map as coarse as the CAM
    n, setting = len(files), (f"{size} px ({cells}×{cells} map), {layer or 'last spatial layer'}"
                              + ('' if method == 'gradcam' else f", {method}"))
    cam = CAM_NAMES.get(method, method)
    maps = {cam: r['cams'].numpy(), f'{cam}, aligned': ra['cams'].numpy(),
            'centre prior': np.repeat(centre_prior(size, size)[None], n, 0),
            'random map': np.stack([random_map(size, size, cells=cells, seed=1000*seed + i) for i in range(n)])}
    acc = 100*(r['pred'] == r['y']).float().mean().item()
    correct = (r['pred'] == r['y']).numpy()
    return [{'setting': setting, 'map': k, **{m: v for m, v in localisation_scores(c, r['boxes'], correct).items()
                                              if m in METRICS}, 'accuracy %': acc, 'map side': cells}
            for k, c in maps.items()]

def _map_side(model, x, layer):
    "Side of the (unsampled) map at `layer` for the input `x`."
    from imgcls_course.gradcam import Hook, last_spatial_layer
    if layer is None: _, layer = last_spatial_layer(model, x)
    with torch.no_grad(), Hook(layer) as h: model.eval()(x)
    return int(h.stored.shape[-1])

def summarise(df:pd.DataFrame, digits:int=1)->pd.DataFrame:
    "Mean ± std (range) over seeds of each metric, one row per (setting, map), in the order they first appear."
    from imgcls_course.evidence import spread
    rows = []
    for (setting, m), g in df.groupby(['setting', 'map'], sort=False):
        rows.append({'setting': setting, 'map': m, 'seeds': g['seed'].nunique(),
                     **{c: spread(g[c], 2 if c == 'energy ratio' else digits) for c in METRICS}})
    return pd.DataFrame(rows)

def markdown_table(summary:pd.DataFrame)->str:
    "The summary as a markdown table."
    cols = list(summary.columns)
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|'*len(cols)]
    lines += ['| ' + ' | '.join(str(r[c]) for c in cols) + ' |' for _, r in summary.iterrows()]
    return '\n'.join(lines)

def last_line(df:pd.DataFrame, setting:str)->str:
    ("`pointing game: grad-cam X %, centre prior Y %`: means over seeds in `setting`, one decimal "
     "(the aligned map when there is one).")
    d = df[df['setting'] == setting].groupby('map')['pointing game %'].mean()
    gc = d['grad-cam, aligned'] if 'grad-cam, aligned' in d else d['grad-cam']
    return f"pointing game: grad-cam {gc:.1f} %, centre prior {d['centre prior']:.1f} %"

def gap_line(df:pd.DataFrame, setting:str, cam:str=None)->str:
    ("`cam` (default: the setting's first map) minus the centre prior's pointing game, per seed, "
     "and whether it beats the spread.")
    from imgcls_course.evidence import paired_gap, gap_text
    d = df[df['setting'] == setting].pivot(index='seed', columns='map', values='pointing game %')
    cam = cam or df[df['setting'] == setting]['map'].iloc[0]
    return f"{setting}: {cam} − centre prior, pointing game (points, paired by seed): " + \
           gap_text(paired_gap(d[cam], d["centre prior"]), 1)

def align_line(df:pd.DataFrame, setting:str)->str:
    ("Aligned minus the usual resize of the setting's map, pointing game per seed "
     "(None when the setting has no aligned map).")
    from imgcls_course.evidence import paired_gap, gap_text
    d = df[df['setting'] == setting].pivot(index='seed', columns='map', values='pointing game %')
    al = [m for m in d.columns if m.endswith(', aligned')]
    if not al: return None
    cam = al[0][:-len(', aligned')]
    return f"{setting}: {cam}, aligned − usual resize, pointing game (points, paired by seed): " + \
           gap_text(paired_gap(d[al[0]], d[cam]), 1)

def cam_maps(df:pd.DataFrame, setting:str)->list:
    "The CAM maps scored in `setting` (not the baselines)."
    return [m for m in df[df['setting'] == setting]['map'].unique() if m not in ('centre prior', 'random map')]

def default_sizes(placement:str='centre')->list:
    "Input sizes scored by default: even and odd map sides, the first is the main setting."
    return [320, 256, 224, 160] if placement == 'anywhere' else [128, 160, 192, 224, 256]

def default_out(placement:str='centre')->Path:
    "Where the table goes: one file per kind of training pets."
    return Path(__file__).parent/'results'/('localisation.md' if placement == 'anywhere' else 'localisation_centred.md')

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='*', default=None, help='model seeds (default: cached ones, >=3)')
    p.add_argument('--n', type=int, default=120, help='fresh images per seed')
    p.add_argument('--sizes', type=int, nargs='*', default=None,
                   help='input sizes; the first is the main one '
                        '(default: 320 256 224 160, or 128 160 192 224 256 for --placement centre)')
    p.add_argument('--layer', default=None, help='also score a map at this layer (e.g. 0.2.4)')
    p.add_argument('--method', default='gradcam',
                   help="method of the map at --layer: gradcam, hirescam, layercam, gradcam++")
    p.add_argument('--placement', default='anywhere', choices=['centre', 'anywhere'],
                   help="the pets the models were fine-tuned on (trained and cached on first use for 'anywhere')")
    p.add_argument('--train-size', type=int, default=256, help='image size the models were fine-tuned at')
    p.add_argument('--eval-seed', type=int, default=EVAL_SEED, help='generator seed offset of the images')
    p.add_argument('--out', default=None, help='markdown file to write (default: bench/results/localisation.md, '
                   'or localisation_centred.md for models fine-tuned on centred pets)')
    a = p.parse_args(argv)
    warnings.filterwarnings('ignore')
    torch.set_num_threads(min(2, torch.get_num_threads()))
    from imgcls_course.pets_model import trained_pets_learner
    seeds = a.seeds or cached_seeds(size=a.train_size, placement=a.placement)
    sizes = a.sizes or default_sizes(a.placement)
    t0, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as d:
        for s in seeds:
            learn = trained_pets_learner(seed=s, size=a.train_size, placement=a.placement)
            files, boxes = eval_pets(d, s, a.n, a.eval_seed)
            for size in sizes:
                for layer, method in [(None, 'gradcam')] + ([(a.layer, a.method)] if a.layer else []):
                    rows += [{'seed': s, **r}
                             for r in score_maps(learn, files, boxes, size, layer, seed=s, method=method)]
            print(f"seed {s}: done ({time.perf_counter()-t0:.0f} s)", file=sys.stderr)
    df = pd.DataFrame(rows)
    main_setting = df['setting'].iloc[0]
    acc = df[df['map'] == 'grad-cam'].groupby('setting', sort=False)['accuracy %']
    from imgcls_course.evidence import spread
    trained = f"fine-tuned at {a.train_size} px on {'centred' if a.placement == 'centre' else 'off-centre'} pets"
    out = [f"Localisation on off-centre pets (`placement='anywhere'`), models {trained}, {a.n} fresh images "
           f"per model seed (generator seed {a.eval_seed} + model seed), model seeds {list(seeds)}; "
           f"mean ± std over seeds (min to max). One image is worth {100/a.n:.1f} points of pointing game "
           f"within a seed. {time.perf_counter()-t0:.0f} s on {torch.get_num_threads()} CPU threads "
           f"({platform.machine()}, torch {torch.__version__}; a shared machine).", '',
           markdown_table(summarise(df)), '',
           'Classification accuracy on these images: ' +
           '; '.join(f"{k}: {spread(v, 1)} %" for k, v in acc), '']
    out += [gap_line(df, st, cam) for st in df['setting'].unique() for cam in cam_maps(df, st)]
    out += [''] + [line for st in df['setting'].unique() if (line := align_line(df, st))]
    out += ['', last_line(df, main_setting)]
    text = '\n'.join(out)
    print(text)
    out_file = Path(a.out) if a.out else default_out(a.placement)
    out_file.parent.mkdir(parents=True, exist_ok=True); out_file.write_text(text + '\n')
    df.to_csv(out_file.with_suffix('.csv'), index=False)   # per seed, for lessons that compute their prose from it
    return df

if __name__ == '__main__': main()
