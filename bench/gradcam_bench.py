"""Speed of `imgcls_course.gradcam.grad_cam` vs pytorch-grad-cam on the same model, layer, batch and targets, for each
method (`method=`: gradcam, hirescam, layercam, gradcam++ against `GradCAM`, `HiResCAM`, `LayerCAM`, `GradCAMPlusPlus`).

Prints a markdown table and writes it to `bench/results/gradcam.md`. Timings are interleaved (ours, reference,
ours, ...) in one process and the median of `--reps` runs is reported, so the ratio is fair even on a busy
machine; absolute times are not. Runs on CUDA too when it is available (`--device cuda`).
Usage: python bench/gradcam_bench.py [--reps 5] [--size 224] [--bs 1 8] [--methods gradcam layercam] [--device cpu]
"""
import argparse, platform, statistics, time, warnings
from pathlib import Path
import numpy as np, torch
warnings.filterwarnings('ignore')
from torchvision.models import resnet18
from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from imgcls_course.models import efficientnet_lite0
from imgcls_course.gradcam import grad_cam, CAM_METHODS

REFERENCE = {'gradcam': GradCAM, 'hirescam': HiResCAM, 'layercam': LayerCAM, 'gradcam++': GradCAMPlusPlus}

def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()

def _time(f, dev):
    _sync(dev); t = time.perf_counter(); f(); _sync(dev); return time.perf_counter() - t

def bench(name, model, layer, bs, size, reps, dev, method='gradcam'):
    x = torch.randn(bs, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    tg = torch.randint(0, 1000, (bs,), generator=torch.Generator().manual_seed(1)).tolist()
    ref_targets = [ClassifierOutputTarget(t) for t in tg]
    Ref = REFERENCE[method]
    cam = Ref(model, [layer])
    ours_f = lambda: grad_cam(model, x, tg, layer=layer, method=method)
    ref_f = lambda: cam(x, ref_targets)
    def ref_with():
        with Ref(model, [layer]) as c: c(x, ref_targets)
    err = np.abs(ours_f().cpu().numpy() - ref_f()).max()
    fs = {'ours': ours_f, 'ref': ref_f, 'ref_with': ref_with,
          'ours_auto': lambda: grad_cam(model, x, tg, method=method)}
    for f in fs.values(): f()                                   # warm-up
    ts = {k: [] for k in fs}
    for _ in range(reps):
        for k, f in fs.items(): ts[k].append(_time(f, dev))
    cam.activations_and_grads.release()
    med = {k: 1000*statistics.median(v) for k, v in ts.items()}
    return (f"| {method} | {name} | {bs} | {size} | {med['ours']:.1f} | {med['ours_auto']:.1f} | {med['ref']:.1f} | "
            f"{med['ref_with']:.1f} | **{med['ref']/med['ours']:.2f}×** | {err:.1e} |")

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--reps', type=int, default=5); p.add_argument('--size', type=int, default=224)
    p.add_argument('--bs', type=int, nargs='+', default=[1, 8])
    p.add_argument('--methods', nargs='+', default=list(REFERENCE), choices=list(CAM_METHODS))
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    r18 = resnet18(weights=None).eval().to(dev)
    lite = efficientnet_lite0().eval().to(dev)
    hw = (torch.cuda.get_device_name() if dev.type == 'cuda'
          else f'CPU ({torch.get_num_threads()} threads, {platform.machine()})')
    lines = [f'Grad-CAM speed, ms per call (median of {a.reps}, interleaved), {hw}, torch {torch.__version__}.', '',
             '"ours (auto)" also finds the layer (one extra one-image forward); "ref" reuses one `GradCAM` object, '
             '"ref (with)" builds it per call as its README does. Ratio = ref / ours (>1: ours faster).', '',
             '| method | model | batch | px | ours | ours (auto) | ref | ref (with) | ratio | max abs diff |',
             '|---|---|---|---|---|---|---|---|---|---|']
    print('\n'.join(lines), flush=True)
    for method in a.methods:
        for bs in a.bs:
            for name, m, layer in (('resnet18', r18, r18.layer4[-1]), ('efficientnet_lite0', lite, lite.bn2)):
                lines.append(bench(name, m, layer, bs, a.size, a.reps, dev, method)); print(lines[-1], flush=True)
    out = Path(__file__).parent/'results'/'gradcam.md'
    out.parent.mkdir(exist_ok=True); out.write_text('\n'.join(lines) + '\n')
    print(f'\nwritten to {out}')

if __name__ == '__main__': main()
