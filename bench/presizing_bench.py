"""Presizing benchmark: fidelity, padded pixels and throughput of the batch step, ours vs fastai vs naive.

On the same images and the same random parameters (drawn like `aug_transforms(size=224, min_scale=0.75)`):
  1. fidelity: PSNR and SSIM of each pipeline against a reference rendered ONCE from the full-resolution
     original with that pipeline's exact geometry (8x8 supersampled, i.e. box-filtered);
  2. padded pixels: the fraction of output pixels that come from padding (run on an all-ones image with
     zero padding);
  3. throughput of the batch step, batch of 64 presized 460 px items -> 224 px, interleaved repeats.
Fidelity is also compared image by image: each pipeline's PSNR minus fastai's on the same image, as mean,
spread and range, split by how many times fastai resampled that image (two, or three when its crop is
above twice the output size and `_grid_sample` first shrinks it with `F.interpolate`, counted by a hook).
Prints markdown tables and findings and writes them to bench/results/presizing.md.

    python bench/presizing_bench.py            # full run (about 2 minutes on 2 idle cores)
    python bench/presizing_bench.py --quick    # fewer images and repeats
"""
import argparse, os, platform, statistics, sys, time, warnings
from pathlib import Path
warnings.filterwarnings('ignore', message=r'`torch.jit.script` is deprecated', category=FutureWarning)
import numpy as np, torch
from PIL import Image
from skimage.metrics import structural_similarity
import fastai
from fastai.torch_core import TensorImage
from fastai.data.core import Pipeline
from fastai.vision.augment import aug_transforms
from imgcls_course.data import pets_path, real_photo, REAL_PHOTOS
from imgcls_course.images import open_rgb
from imgcls_course.presizing import (crop_box, presize_item, draw_params, presize_matrix, presize_batch, auto_ss,
    PresizeAug, count_calls)
from imgcls_course.fidelity import (crop_subbox, as_fastai_crop, naive_augment, fastai_augment, fastai_matrix, box_mat,
    render_reference, psnr)

P, S = 460, 224
NAMES = {'naive': 'naive: crop to 224 px, then warp, flip, rotate, zoom one by one',
         'fastai': "fastai `aug_transforms(size=224, min_scale=0.75)`",
         'ours1': 'ours, `ss=1` (plain bilinear)',
         'ours': 'ours, `ss="auto"` (supersampled, the default)'}
RESAMPLES = {'naive': '1 + 4', 'fastai': '1 + 2', 'ours1': '1 + 1', 'ours': '1 + 1'}

def _t(img): return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()[None]/255

def _ssim(a, b): return structural_similarity(a[0].permute(1, 2, 0).numpy(), b[0].permute(1, 2, 0).numpy(),
                                              channel_axis=2, data_range=1.)

def fidelity(images, seed=0):
    ("Per pipeline: lists of PSNR, SSIM, padded fraction (and fastai's resample count) "
     "over `images` [(kind, PIL image)].")
    torch.manual_seed(seed); rng = np.random.default_rng(seed)
    prm = as_fastai_crop(draw_params(len(images)), P)   # one crop both ours and fastai can take exactly
    res = {k: dict(psnr=[], ssim=[], pad=[], kind=[], fa_resamples=[]) for k in NAMES}
    ones_big, ones_small = torch.ones(1, 1, P, P), torch.ones(1, 1, S, S)
    for i, (kind, im) in enumerate(images):
        q = {k: v[i:i+1] for k, v in prm.items()}
        W0, H0 = im.size; orig = _t(im)[0]
        box = crop_box(W0, H0, P, tuple(rng.random(2)))
        big = _t(im.resize((P, P), Image.BILINEAR, box=box))
        sub = crop_subbox(box, q['scale'], q['tx'], q['ty'])
        small = _t(im.resize((S, S), Image.BILINEAR, box=sub))
        nocrop = {**q, 'scale': torch.ones(1), 'tx': torch.full((1,), .5), 'ty': torch.full((1,), .5)}
        ref = render_reference(orig, box_mat(box, (W0, H0)) @ presize_matrix(q, (P, P), (S, S)), S)
        # fastai's `_grid_sample` shrinks first when the crop is over 2x the output
        with count_calls('interpolate') as c: y_fa = fastai_augment(big, q, S)
        out = {
            'naive': (naive_augment(small, q),
                      render_reference(orig, box_mat(sub, (W0, H0)) @ presize_matrix(nocrop, (S, S), (S, S)), S),
                      naive_augment(ones_small, q, pad_mode='zeros')),
            'fastai': (y_fa,
                       render_reference(orig, box_mat(box, (W0, H0), P) @ fastai_matrix(prm, i, P), S, grid_align=True),
                       fastai_augment(ones_big, q, S, pad_mode='zeros')),
            'ours1': (presize_batch(big, S, q, ss=1), ref,
                      presize_batch(ones_big, S, q, ss=1, pad_mode='zeros')),
            'ours': (presize_batch(big, S, q), ref, presize_batch(ones_big, S, q, pad_mode='zeros')),
        }
        for k, (y, r, ones) in out.items():
            y = y.clamp(0, 1)
            res[k]['psnr'].append(psnr(y, r).item()); res[k]['ssim'].append(_ssim(y, r[None] if r.ndim == 3 else r))
            res[k]['pad'].append(1 - ones.mean().item()); res[k]['kind'].append(kind)
            res[k]['fa_resamples'].append(2 + min(c['interpolate'], 1))
    return res

def throughput(batch, repeats, device='cpu'):
    ("Median images/s of each batch step on `batch` (n,3,P,P), and the range of its speed ratio to fastai "
     "over the interleaved repeats.")
    x = TensorImage(batch.to(device))
    x_small = torch.nn.functional.interpolate(batch, size=(S, S), mode='area').to(device)
    fa = Pipeline(aug_transforms(size=S, min_scale=0.75, max_lighting=0.), split_idx=0)
    ours, ours1 = PresizeAug(S), PresizeAug(S, ss=1)
    fns = {'naive': lambda: naive_augment(x_small, draw_params(len(x_small))),
           'fastai': lambda: fa(x), 'ours1': lambda: ours1(x, split_idx=0), 'ours': lambda: ours(x, split_idx=0)}
    sync = (lambda: torch.cuda.synchronize()) if device == 'cuda' else (lambda: None)
    for f in fns.values(): f(); sync()                   # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            sync(); t = time.perf_counter(); f(); sync(); times[k].append(time.perf_counter() - t)
    ratio = {k: [tf/tk for tf, tk in zip(times['fastai'], v)] for k, v in times.items()}
    return ({k: len(batch)/statistics.median(v) for k, v in times.items()},
            {k: (min(r), max(r)) for k, r in ratio.items()})

def ratio_cell(speed, rng, k):
    "Speed relative to fastai's: the ratio of medians, and the lowest and highest ratio over the repeats."
    return '1.00x' if k == 'fastai' else f"{speed[k]/speed['fastai']:.2f}x ({rng[k][0]:.2f}-{rng[k][1]:.2f})"

def diff_cell(d):
    "mean ± std [min, max] of per-image differences, in dB."
    if len(d) == 0: return '-'
    sd = f" ± {np.std(d, ddof=1):.2f}" if len(d) > 1 else ''
    return f"{np.mean(d):+.2f}{sd} [{np.min(d):+.2f}, {np.max(d):+.2f}]"

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='12 pets, 3 repeats')
    ap.add_argument('--n-pets', type=int, default=48)
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'presizing.md'))
    a = ap.parse_args()
    if a.quick: a.n_pets, a.repeats = 12, 3
    torch.manual_seed(0)
    load0 = os.getloadavg()
    files = sorted((pets_path()/'images').iterdir())
    step = max(1, len(files)//a.n_pets)
    images = ([('pets', open_rgb(f)) for f in files[::step][:a.n_pets]]
              + [('photos', real_photo(n)) for n in REAL_PHOTOS])
    t0 = time.perf_counter()
    fid = fidelity(images)
    t_fid = time.perf_counter() - t0
    batch = torch.cat([_t(presize_item(open_rgb(f), P)) for f in files[:64]])
    cpu, cpu_rng = throughput(batch, a.repeats)
    gpu, gpu_rng = throughput(batch, a.repeats, 'cuda') if torch.cuda.is_available() else (None, None)
    load1 = os.getloadavg()
    ss = auto_ss(presize_matrix(draw_params(64), (P, P), (S, S)), (P, P), (S, S))

    def mean(k, key, kind=None):
        v = [x for x, kd in zip(fid[k][key], fid[k]['kind']) if kind is None or kd == kind]
        return float(np.mean(v))
    n_pets = sum(k == 'pets' for k, _ in images)
    hdr = ['batch step', 'resamples (item + batch)', f'PSNR pets ({n_pets}), dB',
           f'PSNR photos ({len(REAL_PHOTOS)}), dB', 'SSIM (all)', 'padded pixels', 'CPU img/s',
           'CPU vs fastai (range)'] + (['GPU img/s', 'GPU vs fastai (range)'] if gpu else [])
    rows = []
    for k in NAMES:
        r = [NAMES[k], RESAMPLES[k], f"{mean(k, 'psnr', 'pets'):.2f}", f"{mean(k, 'psnr', 'photos'):.2f}",
             f"{mean(k, 'ssim'):.4f}", f"{100*mean(k, 'pad'):.2f}%", f"{cpu[k]:.0f}",
             ratio_cell(cpu, cpu_rng, k)]
        if gpu: r += [f"{gpu[k]:.0f}", ratio_cell(gpu, gpu_rng, k)]
        rows.append(r)
    RESAMPLES['fastai'] = '1 + 2 or 1 + 3'
    for r, k in zip(rows, NAMES): r[1] = RESAMPLES[k]
    md = ['| ' + ' | '.join(hdr) + ' |', '|' + '---|'*len(hdr)] + ['| ' + ' | '.join(r) + ' |' for r in rows]

    # per-image PSNR differences from fastai, split by kind and by fastai's number of batch resamples
    kinds, n_fa = np.array(fid['fastai']['kind']), np.array(fid['fastai']['fa_resamples'])
    groups = [(kd, nr) for kd in ('pets', 'photos') for nr in (2, 3)]
    gname = {2: 'fastai resampled twice', 3: 'three times'}
    hdr2 = ['PSNR minus fastai\'s, same image, dB'] \
           + [f"{kd}, {gname[nr]} ({((kinds == kd) & (n_fa == nr)).sum()})" for kd, nr in groups] \
           + [f'images ahead of fastai (of {len(kinds)})']
    diffs, rows2 = {}, []
    for k in ('naive', 'ours1', 'ours'):
        d = np.array(fid[k]['psnr']) - np.array(fid['fastai']['psnr']); diffs[k] = d
        rows2.append([NAMES[k].split(':')[0].split(' (')[0]]
                     + [diff_cell(d[(kinds == kd) & (n_fa == nr)]) for kd, nr in groups]
                     + [f"{(d > 0).sum()}"])
    md += ['', '| ' + ' | '.join(hdr2) + ' |', '|' + '---|'*len(hdr2)] + ['| ' + ' | '.join(r) + ' |' for r in rows2]

    two, three = n_fa == 2, n_fa == 3
    def m(x, fmt='+.1f'): return format(float(np.mean(x)), fmt) if len(x) else 'n/a' 
    d, d1 = diffs['ours'], diffs['ours1']
    pad = {k: 100*mean(k, 'pad') for k in NAMES}
    findings = [
        '',
        'Findings (computed from the tables above):',
        f"- The naive pipeline is behind fastai on {(diffs['naive'] < 0).sum()} of {len(kinds)} images (its closest: "
        f"{diffs['naive'].max():+.1f} dB) and pads {pad['naive']/pad['fastai']:.1f}x as many pixels as fastai.",
        f"- fastai resampled {three.sum()} of {len(kinds)} images three times "
        f"({three.mean():.0%}: one crop is drawn per image here, one per batch in training). "
        "Those images cost fastai most: ours (`ss=\"auto\"`) is ahead there by "
        f"{m(d[three])} dB on average, against {m(d[two])} dB on the {two.sum()} images fastai resampled twice.",
        f"- Ours with `ss=\"auto\"` is ahead of fastai on {(d > 0).sum()} of {len(kinds)} images; "
        f"the smallest lead is {d.min():+.2f} dB.",
        f"- Ours with `ss=1` is ahead on {(d1[two] > 0).sum()} of the {two.sum()} images fastai resampled twice "
        f"(mean {m(d1[two], '+.2f')} dB) and on {(d1[three] > 0).sum()} of the {three.sum()} it resampled three times "
        f"(mean {m(d1[three], '+.2f')} dB).",
        f"- Speed of the batch step on the CPU: `ss=\"auto\"` {cpu['ours']/cpu['fastai']:.1f}x fastai's "
        f"({cpu_rng['ours'][0]:.1f}-{cpu_rng['ours'][1]:.1f}x over the repeats), "
        f"`ss=1` {cpu['ours1']/cpu['fastai']:.1f}x ({cpu_rng['ours1'][0]:.1f}-{cpu_rng['ours1'][1]:.1f}x).",
    ]
    dev = torch.cuda.get_device_name() if gpu else 'none lent to this run'
    notes = [
        '',
        f"Same {len(images)} images ({n_pets} synthetic pets, {len(REAL_PHOTOS)} real photos) and the same random "
        "parameters (one draw per image, `aug_transforms` defaults: flip, rotate 10°, zoom 1-1.1, warp 0.2, p=0.75, "
        f"crop area 0.75-1) for every pipeline; items presized to {P} px (random crop position), output {S} px. "
        "Each pipeline is compared with a reference rendered once from the full-resolution original with that "
        "pipeline's own geometry, 8x8 supersampled. Padded pixels: share of the output that comes from outside the "
        "image the batch step was given (zero padding on an all-ones image). PSNR minus fastai's: mean ± standard "
        "deviation [min, max] over the images of each group, their number in the header. Throughput: the batch step "
        "only, a batch of 64 presized pets "
        f"(fastai: `aug_transforms(size={S}, min_scale=0.75, max_lighting=0)`, lighting off for both; "
        f"naive: its 4 resamples at {S} px), median of {a.repeats} interleaved repeats; "
        f"`ss=\"auto\"` chose ss={ss} here.",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads, "
        f"fastai {fastai.__version__}; GPU: {dev}. Load average {load0[0]:.1f} before, {load1[0]:.1f} after on "
        f"{os.cpu_count()} cores: other jobs shared the CPU, so absolute img/s are low and noisy; the ratios come "
        "from interleaved runs in one process (the range is the lowest and highest ratio over the repeats).",
    ]
    text = '\n'.join(md + findings + notes) + '\n'
    print(text)
    print(f"(fidelity pass {t_fid:.0f} s)", file=sys.stderr)
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True); out.write_text(text)

if __name__ == '__main__': main()
