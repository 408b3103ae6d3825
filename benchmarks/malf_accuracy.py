"""Accuracy benchmark on inter-subject pairs of malf2012 (the held-out tables of README.md and MODEL_CARD.md).

Runs, on the same directed pairs of the held-out subjects 1000-1009 and in the same process:

* ``affine``   – avsm affine-opt (engine defaults);
* ``vsvf-opt`` – avsm vSVF-opt (settings from the command line, engine defaults otherwise);
* ``vsvf-tuned`` – (only when named) vSVF-opt with TUNED_VSVF, the settings tuned on training pairs;
* ``syn``      – ANTs SyN (antspyx, ``type_of_transform="SyN"``: its own affine stage, started from the
                 centre-of-mass initialisation ``[fixed,moving,1]`` that antspyx adds when no
                 ``initial_transform`` is given; labels with ``genericLabel``);
* ``affine-net``, ``avsm``, ``avsm-3``, ``avsm-io`` – the AVSM network (``--avsm-model``, default the
                 bundled one) with 0 (affine network only), 2 and 3 vSVF steps, and 2 steps followed by
                 ``--instance-opt`` iterations of instance optimisation;
* ``voxelmorph`` – the VoxelMorph network (``--voxelmorph-model``, default the bundled one);
  these five rows run the networks' own affine (``affine_refine=0``);
  every network row runs on the model's default test-time working grid (its manifest's
  ``inference_spacing_mm``, 2.5 mm for the bundled models; the tables recorded before the manifest
  named it were taken at their 3 mm training grid, which ``--network-spacing 3`` reproduces);
* ``affine-net-r``, ``avsm-3-r``, ``avsm-io-r``, ``voxelmorph-r`` – the same with the engine's default affine
                 refinement (``--affine-refine``, 30 mk-LNCC iterations from the affine network's result)
                 before the deformable network (``avsm-io-r``: 2 vSVF steps, as ``avsm-io``);
* ``elastix``  – elastix affine + B-spline (itk-elastix default parameter maps 'affine' and 'bspline',
                 the affine map started with AutomaticTransformInitialization CenterOfGravity; labels
                 with transformix, FinalBSplineInterpolationOrder 0).

Per method: mean label Dice (labels present in both maps, background excluded; avsm.metrics), the fold
fraction (det J <= 0 over the whole fixed grid) and det J min/max of the full pull-back map (affine
included) on the fixed grid, and seconds per pair end to end (read the inputs, register, warp image and
labels, write the warped image, labels and transform to a temporary folder). For the avsm methods det J
and Dice come from the engine's report (computed inside ``register``, so inside the timing); for the
peers the composed displacement field is written and det J is computed here, outside the timing, with
the same finite differences as the engine (central inside, one-sided at the faces, physical units).

For the networks, ``network_s`` is the network's own time (affine and deformable networks, inference mode),
without reading, pre-processing or outputs. All computation uses ``--threads`` threads (default 2: torch,
ITK/ANTs, elastix). Subjects 1000-1009 are never used for
tuning; the pair list is fixed: pair k (0-based) is (fixed, moving) = (S[k % 10], S[(k % 10 + 1 + k // 10) % 10]).

Usage::

    python benchmarks/malf_accuracy.py --quick                     # 1 pair, all methods
    python benchmarks/malf_accuracy.py --pairs 90 --methods affine-net,avsm,avsm-3,avsm-io,voxelmorph \
        --threads 1 --shard 0/2 --out shard0.csv                     # and --shard 1/2 beside it
    python benchmarks/malf_accuracy.py --merge shard0_pairs.csv,shard1_pairs.csv --threads 1 --out all.md
        # later files replace the same (method, pair) rows of earlier ones; --methods picks and orders the rows;
        # only the pairs every method finished are summarised
    python benchmarks/malf_accuracy.py --pairs 10 --out benchmarks/results/malf_accuracy.md
    python benchmarks/malf_accuracy.py --methods affine,vsvf-opt --vsvf-sigmas 0.02,0.04,0.06,0.08,0.1 \\
        --vsvf-lncc 0.0625:0.3:1,0.125:0.7:1

``--out`` ending in .md gets the markdown table, any other suffix (.csv) the summary as CSV; the per-pair
rows always go next to it as ``<out stem>_pairs.csv``, one row appended as soon as each (pair, method) is
done, so a long run that is stopped keeps what it measured. ``--resume`` reads that file back and runs only
the (pair, method) rows it lacks (rows that failed are run again)::

    python benchmarks/malf_accuracy.py --pairs 90 --methods affine-net,syn --threads 1 --shard 0/2 \
        --out shard0.csv --resume
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

THREADS = 2
for _i, _a in enumerate(sys.argv):  # threads must be fixed before numpy/torch/ITK load
    if _a == "--threads" and _i + 1 < len(sys.argv):
        THREADS = int(sys.argv[_i + 1])
    elif _a.startswith("--threads="):
        THREADS = int(_a.split("=", 1)[1])
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_data import HELD_OUT, malf_image, malf_labels, require_malf2012  # noqa: E402
ALL_METHODS = ("affine", "vsvf-opt", "syn", "elastix")
# The presets of avsm.methods, each run as a user runs it: avsm.register(preset=NAME), nothing else set.
PRESET_ROWS = ("fast", "default", "accurate")
NETWORK_METHODS = ("affine-net", "avsm", "avsm-3", "avsm-io", "voxelmorph",
                   "affine-net-r", "avsm-3-r", "avsm-io-r", "voxelmorph-r")
EXTRA_METHODS = ("vsvf-tuned", "greedy") + PRESET_ROWS + NETWORK_METHODS  # run only when named in --methods
# vsvf-opt settings tuned on malf2012 TRAINING pairs (1010<-1011, 1012<-1013, 1014<-1015, 1017<-1018) with
# benchmarks/tuning/sweep_vsvf.py; see benchmarks/tuning/README.md. Run as method "vsvf-tuned".
TUNED_VSVF = dict(sigma_fractions=(0.015, 0.03, 0.045, 0.06, 0.075), learning_rate=2.0, regularisation=50.0,
                  lncc_scales=((1 / 16, 0.3, 1), (1 / 8, 0.7, 1)))


# ----------------------------------------------------------------------------------------------- pairs
def benchmark_pairs(n: int) -> list[tuple[str, str]]:
    """The fixed, deterministic list of directed (fixed, moving) pairs among the held-out subjects."""
    pairs = []
    for k in range(n):
        i, shift = k % 10, 1 + k // 10
        if shift >= 10:
            raise ValueError("at most 90 directed pairs among 10 subjects")
        pairs.append((HELD_OUT[i], HELD_OUT[(i + shift) % 10]))
    return pairs


# Other benchmarks (cross_contrast.py) register their own "subjects" here: id -> (image path, label path).
EXTRA_SUBJECTS: dict[str, tuple[str, str]] = {}


def image_path(subject: str) -> str:
    return EXTRA_SUBJECTS[subject][0] if subject in EXTRA_SUBJECTS else str(malf_image(subject))


def label_path(subject: str) -> str:
    return EXTRA_SUBJECTS[subject][1] if subject in EXTRA_SUBJECTS else str(malf_labels(subject))


# ------------------------------------------------------------------------------------------ det J, Dice
def det_jacobian_of_displacement(field: sitk.Image) -> np.ndarray:
    """det(d phi / d x) for phi(x) = x + u(x), u an ITK displacement field (physical units) on its grid."""
    u = sitk.GetArrayFromImage(field).astype(np.float64)  # z, y, x, 3 (components in x, y, z)
    m = np.array(field.GetDirection()).reshape(3, 3) @ np.diag(field.GetSpacing())  # index -> physical
    inv = np.linalg.inv(m)  # d index_k / d x_j
    # d u_c / d index_k (index axes in x, y, z order; np.gradient is central inside, one-sided at faces)
    grads = [np.gradient(u[..., c], axis=(2, 1, 0)) for c in range(3)]
    jac = np.empty(u.shape[:3] + (3, 3))
    for c in range(3):
        for j in range(3):
            jac[..., c, j] = sum(grads[c][k] * inv[k, j] for k in range(3)) + (1.0 if c == j else 0.0)
    return np.linalg.det(jac)


def dice_mean(warped_labels: np.ndarray, fixed_labels: np.ndarray) -> float:
    from avsm.metrics import dice_per_label, mean_dice

    return mean_dice(dice_per_label(np.rint(warped_labels).astype(np.int64), fixed_labels.astype(np.int64)))


# --------------------------------------------------------------------------------------------- methods
def similarity_columns(report: dict) -> dict:
    """The similarity a run used and, when it was detected ("auto"), the contrast check's sign agreement."""
    similarity = report["similarity"]
    return {"similarity": similarity["used"], "contrast_agreement": similarity.get("contrast_agreement")}


def run_avsm(method: str, fixed: str, moving: str, args, workdir: str) -> dict:
    import avsm

    settings = spacing = None
    if method == "vsvf-opt":
        settings, spacing = vsvf_settings_from_args(args), args.working_spacing
    elif method == "vsvf-tuned":
        settings = tuned_vsvf_settings()
    tick = time.perf_counter()
    result = avsm.register(image_path(fixed), image_path(moving), method="affine" if method == "affine" else "vsvf-opt",
                           moving_labels=label_path(moving), fixed_labels=label_path(fixed), device="cpu",
                           working_spacing=spacing, vsvf_settings=settings, similarity=args.similarity)
    result.save(os.path.join(workdir, method))
    seconds = time.perf_counter() - tick
    rep = result.report
    return {"dice": rep["dice_mean"], "fold_fraction": rep["fold_fraction"], "detj_min": rep["det_jacobian_min"],
            "detj_max": rep["det_jacobian_max"], "seconds": seconds, "engine_total_s": rep["timings"]["total"],
            **similarity_columns(rep)}


def run_network(method: str, fixed: str, moving: str, args, workdir: str) -> dict:
    import avsm

    steps = {"affine-net": dict(network_vsvf_steps=0), "avsm": dict(network_vsvf_steps=2),
             "avsm-3": dict(network_vsvf_steps=3),
             "avsm-io": dict(network_vsvf_steps=2, instance_opt=args.instance_opt), "voxelmorph": {}}
    base = method[:-2] if method.endswith("-r") else method
    options = dict(method="voxelmorph" if base == "voxelmorph" else "avsm",
                   model=args.voxelmorph_model if base == "voxelmorph" else args.avsm_model, **steps[base])
    if not method.endswith("-r"):
        options["affine_refine"] = 0  # the network's own affine
    if args.network_spacing is not None:
        options["working_spacing"] = args.network_spacing
    tick = time.perf_counter()
    result = avsm.register(image_path(fixed), image_path(moving), moving_labels=label_path(moving),
                           fixed_labels=label_path(fixed), device="cpu", similarity=args.similarity, **options)
    result.save(os.path.join(workdir, method))
    seconds = time.perf_counter() - tick
    rep = result.report
    network_s = sum(rep["network"]["timings"].values())
    return {"dice": rep["dice_mean"], "fold_fraction": rep["fold_fraction"], "detj_min": rep["det_jacobian_min"],
            "detj_max": rep["det_jacobian_max"], "seconds": seconds, "engine_total_s": rep["timings"]["total"],
            "network_s": network_s, **similarity_columns(rep)}


def run_preset(preset: str, fixed: str, moving: str, args, workdir: str) -> dict:
    import avsm

    tick = time.perf_counter()
    result = avsm.register(image_path(fixed), image_path(moving), preset=preset, moving_labels=label_path(moving),
                           fixed_labels=label_path(fixed), device="cpu", similarity=args.similarity)
    result.save(os.path.join(workdir, preset))
    seconds = time.perf_counter() - tick
    rep = result.report
    return {"dice": rep["dice_mean"], "fold_fraction": rep["fold_fraction"], "detj_min": rep["det_jacobian_min"],
            "detj_max": rep["det_jacobian_max"], "seconds": seconds, "engine_total_s": rep["timings"]["total"],
            **similarity_columns(rep)}


# Greedy (picsl-greedy) as its documentation sets it up for brain MRI: affine (12 dof, NCC 2x2x2, from the
# image centres), then deformable (NCC 2x2x2, 100x50x10 iterations, smoothing 2.0 / 0.5 voxels).
GREEDY_AFFINE = "-a -dof 12 -ia-image-centers -n 100x50x10 -m NCC 2x2x2"
GREEDY_DEFORMABLE = "-n 100x50x10 -m NCC 2x2x2 -s 2.0vox 0.5vox"


def run_greedy(fixed: str, moving: str, args, workdir: str) -> dict:
    from picsl_greedy import Greedy3D

    out = os.path.join(workdir, "greedy")
    os.makedirs(out, exist_ok=True)
    f, m = image_path(fixed), image_path(moving)
    affine, warp = os.path.join(out, "affine.mat"), os.path.join(out, "warp.nii.gz")
    threads = f"-threads {THREADS}"
    tick = time.perf_counter()
    greedy = Greedy3D()
    greedy.execute(f"-d 3 {threads} -i {f} {m} {GREEDY_AFFINE} -o {affine}")
    greedy.execute(f"-d 3 {threads} -i {f} {m} -it {affine} {GREEDY_DEFORMABLE} -o {warp}")
    greedy.execute(f"-d 3 {threads} -rf {f} -rm {m} {os.path.join(out, 'warped.nii.gz')} -ri LABEL 0.2vox "
                   f"-rm {label_path(moving)} {os.path.join(out, 'warped_labels.nii.gz')} -r {warp} {affine}")
    seconds = time.perf_counter() - tick
    # evaluation (not timed): the composed forward map (warp + affine) as one displacement field
    composed = os.path.join(out, "composed.nii.gz")
    greedy.execute(f"-d 3 {threads} -rf {f} -rc {composed} -r {warp} {affine}")
    det = det_jacobian_of_displacement(sitk.ReadImage(composed, sitk.sitkVectorFloat64))
    fixed_lab = sitk.GetArrayFromImage(sitk.ReadImage(label_path(fixed)))
    warped = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "warped_labels.nii.gz")))
    return {"dice": dice_mean(warped, fixed_lab), "fold_fraction": float((det <= 0).mean()),
            "detj_min": float(det.min()), "detj_max": float(det.max()), "seconds": seconds}


def run_syn(fixed: str, moving: str, args, workdir: str) -> dict:
    import ants

    out = os.path.join(workdir, "syn")
    os.makedirs(out, exist_ok=True)
    tick = time.perf_counter()
    fixed_img = ants.image_read(image_path(fixed))
    moving_img = ants.image_read(image_path(moving))
    moving_lab = ants.image_read(label_path(moving))
    reg = ants.registration(fixed_img, moving_img, type_of_transform="SyN", outprefix=os.path.join(out, "syn_"))
    warped_lab = ants.apply_transforms(fixed_img, moving_lab, transformlist=reg["fwdtransforms"],
                                       interpolator="genericLabel")
    ants.image_write(reg["warpedmovout"], os.path.join(out, "warped.nii.gz"))
    ants.image_write(warped_lab, os.path.join(out, "warped_labels.nii.gz"))
    seconds = time.perf_counter() - tick  # the transforms are already on disk (outprefix)
    # evaluation (not timed): the composed forward map (warp + affine) as one displacement field
    composed = ants.apply_transforms(fixed_img, moving_img, transformlist=reg["fwdtransforms"],
                                     compose=os.path.join(out, "composed_"))
    det = det_jacobian_of_displacement(sitk.ReadImage(composed, sitk.sitkVectorFloat64))
    fixed_lab = sitk.GetArrayFromImage(sitk.ReadImage(label_path(fixed)))
    warped = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "warped_labels.nii.gz")))
    return {"dice": dice_mean(warped, fixed_lab), "fold_fraction": float((det <= 0).mean()),
            "detj_min": float(det.min()), "detj_max": float(det.max()), "seconds": seconds}


def elastix_parameters():
    """elastix's default affine + B-spline maps, the affine started from the centres of gravity."""
    import itk

    params = itk.ParameterObject.New()
    affine_map = params.GetDefaultParameterMap("affine")
    affine_map["AutomaticTransformInitialization"] = ["true"]
    affine_map["AutomaticTransformInitializationMethod"] = ["CenterOfGravity"]
    params.AddParameterMap(affine_map)
    params.AddParameterMap(params.GetDefaultParameterMap("bspline"))
    return params


def run_elastix(fixed: str, moving: str, args, workdir: str) -> dict:
    import itk

    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(THREADS)
    out = os.path.join(workdir, "elastix")
    os.makedirs(out, exist_ok=True)
    tick = time.perf_counter()
    fixed_img = itk.imread(image_path(fixed), itk.F)
    moving_img = itk.imread(image_path(moving), itk.F)
    moving_lab = itk.imread(label_path(moving), itk.F)
    params = elastix_parameters()
    elx = itk.ElastixRegistrationMethod.New(fixed_img, moving_img)
    elx.SetParameterObject(params)
    elx.SetOutputDirectory(out)
    # NB: elx.SetNumberOfThreads(2) segfaults in itk-elastix 0.25.4 (also number_of_threads= of the functional
    # API); the ITK global default (set in run_elastix) limits elastix's threads instead.
    elx.SetLogToConsole(False)
    elx.SetLogToFile(False)
    elx.UpdateLargestPossibleRegion()
    warped = elx.GetOutput()
    transform = elx.GetTransformParameterObject()
    for i in range(transform.GetNumberOfParameterMaps()):
        transform.SetParameter(i, "FinalBSplineInterpolationOrder", "0")
    tfx = itk.TransformixFilter.New(moving_lab)
    tfx.SetTransformParameterObject(transform)
    tfx.SetLogToConsole(False)
    tfx.UpdateLargestPossibleRegion()
    warped_lab = tfx.GetOutput()
    itk.imwrite(warped, os.path.join(out, "warped.nii.gz"))
    itk.imwrite(warped_lab, os.path.join(out, "warped_labels.nii.gz"))
    for i in range(transform.GetNumberOfParameterMaps()):
        itk.ParameterObject.WriteParameterFile(transform.GetParameterMap(i), os.path.join(out, f"transform_{i}.txt"))
    seconds = time.perf_counter() - tick
    # evaluation (not timed): the full transform (affine + B-spline) as a displacement field on the fixed grid
    # output_directory: transformix writes deformationField.nii there (it wrote it to the working directory)
    field = itk.transformix_deformation_field(moving_img, transform, output_directory=out, log_to_console=False)
    field_path = os.path.join(out, "deformation.nii.gz")
    itk.imwrite(field, field_path)
    det = det_jacobian_of_displacement(sitk.ReadImage(field_path, sitk.sitkVectorFloat64))
    fixed_lab = sitk.GetArrayFromImage(sitk.ReadImage(label_path(fixed)))
    warped_arr = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, "warped_labels.nii.gz")))
    return {"dice": dice_mean(warped_arr, fixed_lab), "fold_fraction": float((det <= 0).mean()),
            "detj_min": float(det.min()), "detj_max": float(det.max()), "seconds": seconds}


def in_fresh_process(function, *arguments):
    """``function(*arguments)`` in a new Python process. picsl-greedy and itk-elastix each carry their own ITK: once
    one has loaded in a process, the other's image readers find no IO factories there. Their timings are taken
    inside the function, so the process start is not counted."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *arguments).result()


def run_method(method: str, fixed: str, moving: str, args, workdir: str) -> dict:
    if method in ("affine", "vsvf-opt", "vsvf-tuned"):
        return run_avsm(method, fixed, moving, args, workdir)
    if method in NETWORK_METHODS:
        return run_network(method, fixed, moving, args, workdir)
    if method in PRESET_ROWS:
        return run_preset(method, fixed, moving, args, workdir)
    if method == "greedy":
        return in_fresh_process(run_greedy, fixed, moving, args, workdir)
    if method == "syn":
        return run_syn(fixed, moving, args, workdir)
    if method == "elastix":
        return in_fresh_process(run_elastix, fixed, moving, args, workdir)
    raise ValueError(f"unknown method {method!r} (choose from {', '.join(ALL_METHODS + EXTRA_METHODS)})")


# ---------------------------------------------------------------------------------------- vsvf settings
def floats(text: str) -> tuple[float, ...]:
    return tuple(float(eval(t, {}, {})) for t in text.split(",") if t.strip())  # allows 1/15


def tuned_vsvf_settings():
    from avsm.losses import LNCCScale
    from avsm.optimisation import VSVFSettings

    tuned = dict(TUNED_VSVF)
    tuned["lncc_scales"] = [LNCCScale(*scale) for scale in tuned["lncc_scales"]]
    return VSVFSettings(**tuned)


def vsvf_settings_from_args(args):
    from avsm.losses import LNCCScale
    from avsm.optimisation import VSVF_OPT_SETTINGS

    overrides = {}
    for name in ("iterations", "learning_rate", "regularisation", "time_steps", "map_resolution_factor"):
        value = getattr(args, f"vsvf_{name}")
        if value is not None:
            overrides[name] = value
    if args.vsvf_sigmas:
        overrides["sigma_fractions"] = floats(args.vsvf_sigmas)
    if args.vsvf_sigma_weights:
        overrides["sigma_weights"] = floats(args.vsvf_sigma_weights)
    elif args.vsvf_sigmas and len(overrides["sigma_fractions"]) != len(VSVF_OPT_SETTINGS.sigma_weights):
        n = len(overrides["sigma_fractions"])
        overrides["sigma_weights"] = tuple(float(i + 1) for i in range(n))  # increasing, as the defaults
    if args.vsvf_lncc:
        scales = []
        for item in args.vsvf_lncc.split(","):
            ratio, weight, dilation = item.split(":")
            scales.append(LNCCScale(float(eval(ratio, {}, {})), float(weight), int(dilation)))
        overrides["lncc_scales"] = scales
    return dataclasses.replace(VSVF_OPT_SETTINGS, **overrides)


# ---------------------------------------------------------------------------------------------- report
def summarise(rows: list[dict], methods: list[str]) -> list[dict]:
    summary = []
    for method in methods:
        rs = [r for r in rows if r["method"] == method and r.get("error") is None]
        if not rs:
            summary.append({"method": method, "pairs": 0})
            continue
        dice = np.array([r["dice"] for r in rs])
        summary.append({
            "method": method, "pairs": len(rs),
            "dice_mean": float(dice.mean()), "dice_sd": float(dice.std(ddof=1)) if len(rs) > 1 else 0.0,
            "fold_fraction": float(np.mean([r["fold_fraction"] for r in rs])),
            "pairs_with_folds": int(sum(r["fold_fraction"] > 0 for r in rs)),
            "detj_min": float(min(r["detj_min"] for r in rs)),
            "detj_max": float(max(r["detj_max"] for r in rs)),
            "seconds": float(np.mean([r["seconds"] for r in rs])),
            "network_s": float(np.mean([r["network_s"] for r in rs])) if all(r.get("network_s") not in (None, "")
                                                                            for r in rs) else None,
        })
    return summary


def markdown(summary: list[dict], header: str) -> str:
    lines = [header, "",
             "| method | pairs | mean Dice ± sd | fold fraction | pairs with folds | det J min | det J max | s / pair "
             "| network s |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if not s["pairs"]:
            lines.append(f"| {s['method']} | 0 | failed | | | | | | |")
            continue
        lines.append(f"| {s['method']} | {s['pairs']} | {s['dice_mean']:.3f} ± {s['dice_sd']:.3f} | "
                     f"{s['fold_fraction']:.2e} | {s['pairs_with_folds']} | {s['detj_min']:.3f} | "
                     f"{s['detj_max']:.2f} | {s['seconds']:.1f} | "
                     f"{'' if s.get('network_s') is None else format(s['network_s'], '.2f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10, help="number of directed held-out pairs (default 10)")
    ap.add_argument("--quick", action="store_true", help="one pair only")
    ap.add_argument("--methods", default=None,
                    help=f"comma list of {', '.join(ALL_METHODS + EXTRA_METHODS)} (default: {','.join(ALL_METHODS)}); "
                         "vsvf-tuned is vsvf-opt with the settings tuned on training pairs (TUNED_VSVF)")
    ap.add_argument("--out", default=None, help="summary file: .md (markdown) or .csv; per-pair rows to <stem>_pairs.csv")
    ap.add_argument("--chart", default=None, help="also draw the speed-accuracy chart (PNG) of the summary")
    ap.add_argument("--keep", default=None, help="keep every method's outputs under this folder")
    ap.add_argument("--working-spacing", type=float, default=None, help="vsvf-opt working spacing in mm")
    ap.add_argument("--vsvf-iterations", type=int, default=None)
    ap.add_argument("--vsvf-learning-rate", type=float, default=None)
    ap.add_argument("--vsvf-regularisation", type=float, default=None)
    ap.add_argument("--vsvf-time-steps", type=int, default=None)
    ap.add_argument("--vsvf-map-resolution-factor", type=float, default=None)
    ap.add_argument("--vsvf-sigmas", default=None, help="sigma fractions of the domain, e.g. 0.02,0.04,0.06")
    ap.add_argument("--vsvf-sigma-weights", default=None, help="weights, e.g. 1/6,2/6,3/6 (default increasing)")
    ap.add_argument("--vsvf-lncc", default=None, help="LNCC scales ratio:weight:dilation,..., e.g. 0.0625:0.3:1,0.125:0.7:1")
    ap.add_argument("--avsm-model", default=None, help="AVSM model name or checkpoint (default: the bundled one)")
    ap.add_argument("--voxelmorph-model", default=None, help="VoxelMorph model name or checkpoint (default: bundled)")
    ap.add_argument("--network-spacing", type=float, default=None,
                    help="working grid of the network rows in mm (default: the model's, see its manifest)")
    ap.add_argument("--instance-opt", type=int, default=20, help="instance-optimisation iterations of avsm-io")
    ap.add_argument("--threads", type=int, default=2, help="threads for every method (default 2)")
    ap.add_argument("--similarity", default="auto", help="the similarity of the avsm rows: auto, lncc or mi")
    ap.add_argument("--shard", default=None, help="K/N: run only pairs k with k %% N == K (parallel processes)")
    ap.add_argument("--merge", default=None, help="comma list of per-pair CSVs to summarise instead of running "
                                                  "(give the shards' --threads too: the header states it)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in <out stem>_pairs.csv and run only the missing or failed ones")
    args = ap.parse_args(argv)
    named = [m.strip() for m in (args.methods or "").split(",") if m.strip()]
    if args.merge:
        return merge(args, named or None)
    if args.resume and not args.out:
        ap.error("--resume needs --out (its per-pair rows are read back from <out stem>_pairs.csv)")

    methods = named or list(ALL_METHODS)
    for m in methods:
        if m not in ALL_METHODS + EXTRA_METHODS:
            ap.error(f"unknown method {m!r} (choose from {', '.join(ALL_METHODS + EXTRA_METHODS)})")
    n = 1 if args.quick else args.pairs
    pairs = benchmark_pairs(n)
    if args.shard:
        k, count = (int(x) for x in args.shard.split("/"))
        pairs = [pair for index, pair in enumerate(pairs) if index % count == k]

    import torch

    torch.set_num_threads(args.threads)
    if "vsvf-opt" in methods:
        print(f"vsvf-opt settings: working_spacing={args.working_spacing or 'default'} {vsvf_settings_from_args(args)}",
              flush=True)
    if "vsvf-tuned" in methods:
        print(f"vsvf-tuned settings: {tuned_vsvf_settings()}", flush=True)

    rows_path = pair_rows_path(args.out) if args.out else None
    done: dict[tuple[str, str, str], dict] = {}
    if args.resume and rows_path.exists():
        done = {(r["method"], r["fixed"], r["moving"]): r for r in read_pair_rows(rows_path) if not r["error"]}
        print(f"resuming: {len(done)} rows kept from {rows_path}", flush=True)
    if any((m, f, mv) not in done for m in methods for f, mv in pairs):
        require_malf2012()  # only work still to do reads the data (a finished --resume does not)
    if rows_path is not None:
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        write_pair_rows(rows_path, list(done.values()))  # failed rows are dropped and run again

    rows: list[dict] = []
    for fixed, moving in pairs:
        for method in methods:
            if (method, fixed, moving) in done:
                rows.append(done[(method, fixed, moving)])
                continue
            with tempfile.TemporaryDirectory(prefix="malf_bench_") as tmp:
                workdir = os.path.join(args.keep, f"{fixed}_{moving}") if args.keep else tmp
                os.makedirs(workdir, exist_ok=True)
                row = {"method": method, "fixed": fixed, "moving": moving, "error": None}
                try:
                    row.update(run_method(method, fixed, moving, args, workdir))
                except Exception as exc:  # keep going: one failing peer must not lose the other numbers
                    row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            if rows_path is not None:
                write_pair_rows(rows_path, [row], append=True)
            if row["error"]:
                print(f"{fixed}<-{moving} {method:9s} FAILED {row['error']}", flush=True)
            else:
                print(f"{fixed}<-{moving} {method:9s} dice {row['dice']:.4f} folds {row['fold_fraction']:.2e} "
                      f"detJ [{row['detj_min']:.3f}, {row['detj_max']:.2f}] {row['seconds']:.1f} s", flush=True)

    wanted = {(m, f, mv) for m in methods for f, mv in pairs}
    kept_elsewhere = [r for key, r in done.items() if key not in wanted]  # other methods' or pairs' rows stay
    write_outputs(rows, methods, pairs, args, kept_elsewhere)
    return 1 if any(r["error"] for r in rows) else 0


PAIR_ROW_KEYS = ["method", "fixed", "moving", "dice", "fold_fraction", "detj_min", "detj_max", "seconds",
                 "engine_total_s", "network_s", "error", "similarity", "contrast_agreement"]
PAIR_ROW_FLOATS = ("dice", "fold_fraction", "detj_min", "detj_max", "seconds", "engine_total_s", "network_s",
                   "contrast_agreement")


def pair_rows_path(out: str) -> Path:
    """Where the per-pair rows of ``--out`` go: ``<out stem>_pairs.csv`` beside it."""
    out_path = Path(out)
    return out_path.with_name(out_path.stem + "_pairs.csv")


def read_pair_rows(path) -> list[dict]:
    """Per-pair rows of a ``_pairs.csv`` file, numbers as floats (None where empty), error None when empty."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for key in PAIR_ROW_FLOATS:
                row[key] = float(row[key]) if row.get(key) not in (None, "") else None
            row["error"] = row.get("error") or None
            rows.append(row)
    return rows


def write_pair_rows(path: Path, rows: list[dict], append: bool = False) -> None:
    """Write (or append, header only when the file is new) per-pair rows, flushed at once."""
    new_file = not append or not path.exists()
    with open(path, "w" if not append else "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=PAIR_ROW_KEYS, extrasaction="ignore")
        if new_file:
            w.writeheader()
        w.writerows(rows)


def merge(args, methods: list[str] | None = None) -> int:
    """Summarise per-pair CSVs (shards, or a rerun of some methods) into one table on common pairs.

    A (method, pair) row in a later file replaces the same row of an earlier one. ``methods`` (default: all
    in the files, in order of appearance) selects the rows. Only the pairs that every selected method
    finished without error are summarised, so every row of the table averages the same pairs.
    """
    latest: dict[tuple[str, str, str], dict] = {}
    for name in args.merge.split(","):
        for row in read_pair_rows(name):
            latest[(row["method"], row["fixed"], row["moving"])] = row
    rows = list(latest.values())
    methods = methods or list(dict.fromkeys(r["method"] for r in rows))
    rows = [r for r in rows if r["method"] in methods]
    finished = [{(r["fixed"], r["moving"]) for r in rows if r["method"] == m and not r["error"]} for m in methods]
    common = set.intersection(*finished) if finished else set()
    pairs = [p for p in dict.fromkeys((r["fixed"], r["moving"]) for r in rows) if p in common]
    left_out = sum((r["fixed"], r["moving"]) not in common for r in rows)
    if left_out:
        print(f"{left_out} rows of pairs that not every method finished are left out", flush=True)
    rows = [r for r in rows if (r["fixed"], r["moving"]) in common]
    write_outputs(rows, methods, pairs, args)
    return 0


def write_outputs(rows: list[dict], methods: list[str], pairs: list, args, kept_rows: tuple = ()) -> None:
    """Print and write the summary of ``rows``; the per-pair file gets ``kept_rows`` (not summarised) too."""
    summary = summarise(rows, methods)
    names = ", ".join(f"{f}<-{m}" for f, m in pairs) if len(pairs) <= 12 else f"{pairs[0][0]}<-{pairs[0][1]} ..."
    header = (f"malf2012 held-out pairs: {len(pairs)} ({names}); "
              f"{args.threads} thread(s) per process; seconds end to end (read to write)")
    table = markdown(summary, header)
    print()
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".md":
            out.write_text(table)
        else:
            with open(out, "w", newline="") as fh:
                keys = ["method", "pairs", "dice_mean", "dice_sd", "fold_fraction", "pairs_with_folds", "detj_min",
                        "detj_max", "seconds", "network_s"]
                w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
                w.writeheader()
                w.writerows(summary)
        write_pair_rows(pair_rows_path(args.out), [*kept_rows, *rows])
        print(f"written {out}")
    if getattr(args, "chart", None):
        from speed_accuracy_chart import draw

        draw(summary, rows, args.chart, header)
        print(f"written {args.chart}")


if __name__ == "__main__":
    sys.exit(main())
