"""Whole-head accuracy: synthesised heads that are not skull-stripped, and the ICBM152 template under a known warp.

Two pair sets, each scored by the label Dice of the warped moving labels (``avsm.metrics``: labels present
in both maps, background excluded), with the methods and timings of ``malf_accuracy.py`` (same runners, same
threads, det J from the full pull-back map) plus ``ants-affine`` (antspyx ``type_of_transform="Affine"``):

* **whole head** - inter-subject pairs synthesised from the 20 ``synthseg_label_maps`` (whole-head maps: the
  brain structures of ``labels_table.txt`` and extra-cerebral classes 500-530 for skull, scalp, eyes, neck, plus
  a few vessel and optic labels). Every label gets a random intensity (seeded): brain labels within the
  ranges of their tissue class for the contrast (T1: WM > GM > CSF; T2: CSF > GM > WM; FLAIR: GM > WM > CSF),
  extra-cerebral labels a per-contrast value with a small per-image jitter; then a partial-volume blur, a
  smooth multiplicative bias field and Rician noise. The fixed image is a T1 on the subject's own 1 mm grid
  (cropped to the head). The moving image is another subject, of the asked contrast, under a random affine
  (rotations up to 10 degrees, scales 0.9-1.1, shears up to 0.05, shifts up to 10 mm), resampled onto an
  oblique, anisotropic grid (``--spacing``, default 1 x 1 x 2.5 mm, rotated 10-20 degrees about a random axis,
  its centre 100-200 mm away from the fixed head) that keeps only the top 70-85 % of the head along its
  z axis (a partial field of view: the neck and chin are cut). Dice is taken over the 32 brain labels of
  ``labels_table.txt``; the extra-cerebral classes shape the images but are not scored. Pair k (0-based) is
  (fixed, moving) = (S[k % 20], S[(k % 20 + 1 + k // 20) % 20]). NB: the bundled networks saw these label
  maps (brain only) in training, so network rows here are not held out; the optimisation rows are.
* **ICBM** - the ICBM152 2009a template (T1, GM and WM probability maps; the T1 as packaged is brain-extracted,
  so this set has no scalp or skull) against itself: the moving image is
  the template pulled back through a known transform (a random affine composed with a smooth displacement of
  a few mm, seeded per pair), as a T1 or as a T2-like image built from the tissue maps (CSF bright, GM medium,
  WM dark; outside the brain region a dimmed T1). The brain region is (GM + WM > 0.1), closed, filled and dilated by
  2 mm; CSF = that region minus GM minus WM; labels = argmax(GM, WM, CSF) inside it (1 GM, 2 WM, 3 CSF).

Generated volumes are cached under ``benchmarks/cache/whole_head`` (git-ignored; ``--cache`` moves it), named
by seed, pair and synthesis settings, so a rerun or ``--resume`` does not synthesise them again. Usage::

    python benchmarks/whole_head.py --pairs 5 --contrasts T1,T2,FLAIR --icbm T1,T2 \\
        --methods affine,ants-affine,fast,default,accurate,syn,greedy,elastix --similarity mi \\
        --out benchmarks/results/whole_head.md
    python benchmarks/whole_head.py --pairs 1 --contrasts T2 --icbm none --methods affine,default --similarity mi

``--out`` gets one markdown table per pair set; per-pair rows go to ``<out stem>_pairs.csv`` as each finishes,
and ``--resume`` runs only the (pair, method) rows that file lacks or that failed, as in ``malf_accuracy.py``.

Data: synthseg_label_maps (Apache-2.0) and ICBM152 2009a (MNI/ICBM notice), see ../shared/data/README.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import malf_accuracy as bench  # noqa: E402  (sets the thread counts before numpy/torch load)

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from benchmark_data import REPO, SHARED_DATA  # noqa: E402

SYNTHSEG = SHARED_DATA / "synthseg_label_maps"
ICBM = SHARED_DATA / "mni_icbm152_2009a"
CACHE = REPO / "benchmarks" / "cache" / "whole_head"
SUBJECTS = tuple(f"{i:02d}" for i in range(1, 21))

# The brain structures of synthseg's labels_table.txt by tissue class (ventral DC and brain stem count as WM).
WHITE = (2, 7, 16, 28, 41, 46, 60)
GREY = (3, 8, 10, 11, 12, 13, 17, 18, 26, 42, 47, 49, 50, 51, 52, 53, 54, 58)
FLUID = (4, 5, 14, 15, 24, 43, 44)
SCORED = tuple(sorted(WHITE + GREY + FLUID))
# Intensity ranges of the brain classes per contrast (fraction of full scale): disjoint, so the order holds.
CONTRASTS = {
    "T1": {"white": (0.75, 0.85), "grey": (0.45, 0.60), "fluid": (0.10, 0.25)},
    "T2": {"white": (0.25, 0.38), "grey": (0.45, 0.60), "fluid": (0.80, 0.95)},
    "FLAIR": {"white": (0.35, 0.48), "grey": (0.55, 0.70), "fluid": (0.05, 0.15)},
}
MAX_LABEL = 1024


# ------------------------------------------------------------------------------------------- synthesis
def intensity_table(contrast: str, rng: np.random.Generator) -> np.ndarray:
    """Intensity per label value (index = label, 0..MAX_LABEL-1) of one synthesised image of ``contrast``.

    Brain labels draw their own value within their class range; every other label (extra-cerebral classes,
    vessels, ...) takes a value fixed per contrast (its own seeded draw in [0.05, 1]) plus a jitter of sd 0.04.
    """
    ranges = CONTRASTS[contrast]
    base = np.random.default_rng(list(CONTRASTS).index(contrast)).uniform(0.05, 1.0, MAX_LABEL)
    table = np.clip(base + rng.normal(0.0, 0.04, MAX_LABEL), 0.0, 1.0)
    for name, labels in (("white", WHITE), ("grey", GREY), ("fluid", FLUID)):
        table[list(labels)] = rng.uniform(*ranges[name], len(labels))
    table[0] = 0.0
    return table


def physical_points(image: sitk.Image, index_xyz: np.ndarray) -> np.ndarray:
    """Physical points (n, 3) of continuous indices (n, 3), both in x, y, z order."""
    matrix = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    return index_xyz @ matrix.T + np.array(image.GetOrigin())


def head_points(labels: sitk.Image, step: int = 7) -> np.ndarray:
    """Physical points of (every ``step``-th voxel of) the head, label > 0."""
    index_zyx = np.argwhere(sitk.GetArrayViewFromImage(labels) > 0)[::step]
    return physical_points(labels, index_zyx[:, ::-1].astype(np.float64))


def bias_and_noise(image: sitk.Image, rng: np.random.Generator, centre: np.ndarray) -> sitk.Image:
    """A smooth multiplicative bias (exp of a random quadratic over +-100 mm, up to about +-30 %) and Rician
    noise (sd 2-4 % of full scale), on the image's own grid; scaled to 0..1000, float32."""
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    zz, yy, xx = np.indices(arr.shape, dtype=np.float64)
    points = physical_points(image, np.stack([xx.ravel(), yy.ravel(), zz.ravel()], 1))
    p = ((points - centre) / 100.0).T
    terms = [p[0], p[1], p[2], p[0] * p[1], p[0] * p[2], p[1] * p[2], p[0] ** 2, p[1] ** 2, p[2] ** 2]
    log_bias = sum(c * t for c, t in zip(rng.normal(0.0, 0.12, len(terms)), terms))
    arr *= np.exp(log_bias).reshape(arr.shape)
    sd = rng.uniform(0.02, 0.04)
    arr = np.sqrt((arr + rng.normal(0.0, sd, arr.shape)) ** 2 + rng.normal(0.0, sd, arr.shape) ** 2)
    out = sitk.GetImageFromArray((1000.0 * arr).astype(np.float32))
    out.CopyInformation(image)
    return out


def intensities(labels: sitk.Image, contrast: str, rng: np.random.Generator, blur_mm: float) -> sitk.Image:
    """The label map painted with ``intensity_table`` and blurred (partial volume), float32, same grid."""
    table = intensity_table(contrast, rng)
    arr = sitk.GetArrayViewFromImage(labels).astype(np.int64)
    image = sitk.GetImageFromArray(table[np.clip(arr, 0, MAX_LABEL - 1)].astype(np.float32))
    image.CopyInformation(labels)
    return sitk.SmoothingRecursiveGaussian(image, blur_mm)


def load_label_map(path, spacing: float | None = None) -> sitk.Image:
    """A synthseg label map (uint16), cropped to the head + 8 mm, resampled (nearest) to ``spacing`` if given."""
    labels = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkUInt16)
    if spacing is not None:
        size = [int(round(n * s / spacing)) for n, s in zip(labels.GetSize(), labels.GetSpacing())]
        labels = sitk.Resample(labels, size, sitk.Transform(), sitk.sitkNearestNeighbor, labels.GetOrigin(),
                               (spacing,) * 3, labels.GetDirection(), 0, sitk.sitkUInt16)
    index_zyx = np.argwhere(sitk.GetArrayViewFromImage(labels) > 0)
    margin = int(np.ceil(8.0 / labels.GetSpacing()[0]))
    low = np.maximum(index_zyx.min(0)[::-1] - margin, 0)
    high = np.minimum(index_zyx.max(0)[::-1] + margin + 1, labels.GetSize())
    return sitk.RegionOfInterest(labels, [int(v) for v in high - low], [int(v) for v in low])


def scored_labels(labels: sitk.Image) -> sitk.Image:
    """The brain labels of labels_table.txt only (every other label set to 0), uint16."""
    arr = sitk.GetArrayFromImage(labels)
    out = sitk.GetImageFromArray(np.where(np.isin(arr, SCORED), arr, 0).astype(np.uint16))
    out.CopyInformation(labels)
    return out


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.deg2rad(degrees)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def random_affine_matrix(rng: np.random.Generator, max_degrees: float, scale: float, shear: float) -> np.ndarray:
    """Rotation about x, y, z (each up to ``max_degrees``) times scales in 1 +- ``scale`` and shears up to ``shear``."""
    rot = np.eye(3)
    for axis, angle in zip(np.eye(3), rng.uniform(-max_degrees, max_degrees, 3)):
        rot = rotation(axis, angle) @ rot
    upper = np.eye(3) + np.triu(rng.uniform(-shear, shear, (3, 3)), 1)
    return rot @ upper @ np.diag(rng.uniform(1 - scale, 1 + scale, 3))


@dataclass
class Synthesised:
    """One synthesised image with its labels (all labels, not only the scored ones) on the same grid.

    ``transform`` maps the image's physical points to the source label map's (None for a fixed image);
    ``fov_fraction`` is the part of the head's extent along the grid's z axis that the grid keeps.
    """

    image: sitk.Image
    labels: sitk.Image
    transform: sitk.AffineTransform | None = None
    fov_fraction: float = 1.0


def synthesise_fixed(labels: sitk.Image, contrast: str, seed) -> Synthesised:
    """An image of ``contrast`` on the label map's own grid."""
    rng = np.random.default_rng(seed)
    image = intensities(labels, contrast, rng, blur_mm=0.6)
    centre = head_points(labels).mean(0)
    return Synthesised(bias_and_noise(image, rng, centre), labels)


def synthesise_moving(labels: sitk.Image, contrast: str, seed, spacing=(1.0, 1.0, 2.5), tilt=(10.0, 20.0),
                      fov=(0.70, 0.85)) -> Synthesised:
    """An image of ``contrast`` under a random affine, on an oblique grid of ``spacing`` (mm, x y z) rotated by
    ``tilt`` degrees (range) about a random axis, centred 100-200 mm away from the head, keeping the top
    ``fov`` fraction (range) of the head along the grid's z axis."""
    rng = np.random.default_rng(seed)
    head = head_points(labels)
    centre = head.mean(0)
    matrix = random_affine_matrix(rng, 10.0, 0.10, 0.05)
    shift = rng.uniform(-10.0, 10.0, 3)
    away = rng.normal(size=3)
    away *= rng.uniform(100.0, 200.0) / np.linalg.norm(away)
    grid_centre = centre + away
    # image point y -> label-map point matrix (y - grid_centre) + centre + shift
    transform = sitk.AffineTransform(matrix.ravel().tolist(), (shift - away).tolist(), grid_centre.tolist())
    direction = rotation(rng.normal(size=3), rng.uniform(*tilt))
    # the head in grid axes: label-map points -> image points -> coordinates along the grid's axes
    in_image = (head - centre - shift) @ np.linalg.inv(matrix).T + grid_centre
    along = in_image @ direction
    low, high = along.min(0) - 4.0, along.max(0) + 4.0
    fraction = rng.uniform(*fov)
    low[2] = high[2] - fraction * (high[2] - low[2])  # keep the top: the neck and chin leave the field of view
    spacing = np.asarray(spacing, dtype=np.float64)
    size = [int(n) for n in np.ceil((high - low) / spacing)]
    origin = direction @ (low + spacing / 2)
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(spacing.tolist())
    grid.SetOrigin(origin.tolist())
    grid.SetDirection(direction.ravel().tolist())
    # anti-aliasing before the coarser slices: blur with sigma about 0.4 x the slice spacing
    image = intensities(labels, contrast, rng, blur_mm=max(0.6, 0.4 * float(spacing.max())))
    image = sitk.Resample(image, grid, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    moved = sitk.Resample(labels, grid, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    image = bias_and_noise(image, rng, grid_centre)
    return Synthesised(image, moved, transform, fraction)


# ------------------------------------------------------------------------------------------------ ICBM
@dataclass
class Template:
    """ICBM152 T1, tissue probabilities (0..1, float32) and labels (0 bg, 1 GM, 2 WM, 3 CSF) on one grid."""

    t1: sitk.Image
    grey: sitk.Image
    white: sitk.Image
    fluid: sitk.Image
    labels: sitk.Image


def load_template(folder=ICBM, spacing: float | None = None) -> Template:
    """The template, resampled (linear) to ``spacing`` mm if given; CSF and labels as the module docstring."""
    def read(name):
        path = folder / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"
        image = sitk.Cast(sitk.ReadImage(str(path)) / 255.0, sitk.sitkFloat32)  # "/" gives float64
        if spacing is None:
            return image
        size = [int(round(n * s / spacing)) for n, s in zip(image.GetSize(), image.GetSpacing())]
        return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (spacing,) * 3,
                             image.GetDirection(), 0.0, sitk.sitkFloat32)

    t1, grey, white = read("t1"), read("gm"), read("wm")
    radius = lambda mm: [max(1, int(round(mm / s))) for s in grey.GetSpacing()]  # noqa: E731
    brain = sitk.BinaryMorphologicalClosing((grey + white) > 0.1, radius(4.0))
    brain = sitk.BinaryDilate(sitk.BinaryFillhole(brain), radius(2.0))
    fluid = sitk.Cast(brain, sitk.sitkFloat32) * sitk.Clamp(1.0 - grey - white, sitk.sitkFloat32, 0.0, 1.0)
    stack = np.stack([sitk.GetArrayViewFromImage(m) for m in (grey, white, fluid)])
    arr = np.where(sitk.GetArrayViewFromImage(brain) > 0, stack.argmax(0) + 1, 0).astype(np.uint8)
    labels = sitk.GetImageFromArray(arr)
    labels.CopyInformation(grey)
    return Template(t1, grey, white, fluid, labels)


def template_contrast(template: Template, contrast: str) -> sitk.Image:
    """The template as ``contrast``: its T1, or T2-like from the tissue maps (CSF 0.9, GM 0.5, WM 0.3; outside
    the brain region 0.5 x T1, dark skull and medium scalp)."""
    if contrast == "T1":
        return template.t1
    if contrast != "T2":
        raise ValueError(f"ICBM contrasts are T1 and T2, not {contrast!r}")
    inside = sitk.Cast(template.labels > 0, sitk.sitkFloat32)
    tissue = 0.9 * template.fluid + 0.5 * template.grey + 0.3 * template.white
    return inside * tissue + (1.0 - inside) * 0.5 * template.t1


def known_transform(reference: sitk.Image, seed, amplitude_mm: float = 4.0) -> tuple[sitk.Transform, sitk.Transform]:
    """(K, K inverse): K = A o D maps moving-grid points to template points, D a smooth random displacement
    (largest |u| = ``amplitude_mm``, smoothness about 15 mm) and A a random affine about the grid centre
    (rotations up to 8 degrees, scales 0.94-1.06, shears up to 0.03, shifts up to 8 mm)."""
    rng = np.random.default_rng(seed)
    size = np.array(reference.GetSize())
    centre = physical_points(reference, ((size - 1) / 2.0)[None])[0]
    affine = sitk.AffineTransform(random_affine_matrix(rng, 8.0, 0.06, 0.03).ravel().tolist(),
                                  rng.uniform(-8.0, 8.0, 3).tolist(), centre.tolist())
    coarse_spacing = 5.0
    coarse_size = [int(np.ceil(n * s / coarse_spacing)) + 1 for n, s in zip(size, reference.GetSpacing())]
    components = []
    for _ in range(3):
        noise = sitk.GetImageFromArray(rng.normal(size=coarse_size[::-1]))
        noise.SetSpacing((coarse_spacing,) * 3)
        components.append(sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(noise, 15.0)))
    field = np.stack(components, -1)
    field *= amplitude_mm / np.linalg.norm(field, axis=-1).max()
    coarse = sitk.GetImageFromArray(field, isVector=True)
    coarse.SetSpacing((coarse_spacing,) * 3)
    coarse.SetOrigin(reference.GetOrigin())
    coarse.SetDirection(reference.GetDirection())
    displacement = sitk.Resample(coarse, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
    inverse_field = sitk.InvertDisplacementField(displacement, maximumNumberOfIterations=50,
                                                 maxErrorToleranceThreshold=0.01, meanErrorToleranceThreshold=0.001)
    forward = sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(displacement)])  # D first, then A
    inverse = sitk.CompositeTransform([sitk.DisplacementFieldTransform(inverse_field), affine.GetInverse()])
    return forward, inverse


def warp_template(template: Template, contrast: str, seed) -> tuple[Synthesised, sitk.Transform]:
    """The moving image (``contrast``, Rician noise sd 1 % of full scale) and labels: the template pulled back
    through K on its own grid; returns K inverse too (the pull-back that maps them back onto the template)."""
    forward, inverse = known_transform(template.t1, seed)
    image = sitk.Resample(template_contrast(template, contrast), template.t1, forward, sitk.sitkLinear, 0.0,
                          sitk.sitkFloat32)
    labels = sitk.Resample(template.labels, template.t1, forward, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    rng = np.random.default_rng([seed, 1])
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    arr = np.sqrt((arr + rng.normal(0, 0.01, arr.shape)) ** 2 + rng.normal(0, 0.01, arr.shape) ** 2)
    noisy = sitk.GetImageFromArray((1000.0 * arr).astype(np.float32))
    noisy.CopyInformation(image)
    return Synthesised(noisy, labels, forward), inverse


# ------------------------------------------------------------------------------------------- pair sets
def head_pairs(n: int) -> list[tuple[str, str]]:
    """The fixed list of directed (fixed, moving) subject pairs among the 20 synthseg label maps."""
    if n > 20 * 19:
        raise ValueError("at most 380 directed pairs among 20 subjects")
    return [(SUBJECTS[k % 20], SUBJECTS[(k % 20 + 1 + k // 20) % 20]) for k in range(n)]


def write(folder: Path, key: str, image: sitk.Image, labels: sitk.Image) -> str:
    """Write (image, scored labels) under ``folder`` as ``key`` and register them for malf_accuracy's runners."""
    bench.EXTRA_SUBJECTS[key] = (str(folder / f"{key}.nii.gz"), str(folder / f"{key}_labels.nii.gz"))
    sitk.WriteImage(image, bench.EXTRA_SUBJECTS[key][0])
    sitk.WriteImage(labels, bench.EXTRA_SUBJECTS[key][1])
    return key


def cached(folder: Path, key: str) -> str | None:
    image, labels = folder / f"{key}.nii.gz", folder / f"{key}_labels.nii.gz"
    if image.exists() and labels.exists():
        bench.EXTRA_SUBJECTS[key] = (str(image), str(labels))
        return key
    return None


def head_case(folder: Path, k: int, fixed: str, moving: str, contrast: str, args) -> tuple[str, str]:
    """Keys of the k-th whole-head pair of ``contrast`` (fixed T1 of ``fixed``, moving ``contrast`` of
    ``moving``), synthesised into ``folder`` unless already there."""
    fixed_key, moving_key = f"head{fixed}_T1", f"head{moving}_{contrast}_k{k}"
    if not cached(folder, fixed_key):
        case = synthesise_fixed(load_label_map(SYNTHSEG / f"training_seg_{fixed}.nii.gz"), "T1",
                                [args.seed, int(fixed), 0])
        write(folder, fixed_key, case.image, scored_labels(case.labels))
    if not cached(folder, moving_key):
        case = synthesise_moving(load_label_map(SYNTHSEG / f"training_seg_{moving}.nii.gz"), contrast,
                                 [args.seed, int(moving), 1 + list(CONTRASTS).index(contrast), k],
                                 spacing=args.spacing, fov=args.fov)
        write(folder, moving_key, case.image, scored_labels(case.labels))
    return fixed_key, moving_key


def icbm_case(folder: Path, k: int, contrast: str, args, template: list) -> tuple[str, str]:
    """Keys of the k-th ICBM pair (fixed template T1, moving ``contrast`` under the k-th known transform)."""
    fixed_key, moving_key = "icbm_T1", f"icbm_{contrast}_k{k}"
    for key in (fixed_key, moving_key):
        if cached(folder, key):
            continue
        if not template:
            template.append(load_template())
        if key == fixed_key:
            write(folder, key, template[0].t1 * 1000.0, template[0].labels)
        else:
            case, _ = warp_template(template[0], contrast, [args.seed, k, 2])
            write(folder, key, case.image, case.labels)
    return fixed_key, moving_key


def pair_set(fixed_key: str, moving_key: str) -> str:
    """The table a pair belongs to, from its keys: 'whole head T1 -> T2', 'ICBM T1 -> T1', ..."""
    moving_contrast = moving_key.split("_")[1]
    return f"{'ICBM' if fixed_key.startswith('icbm') else 'whole head'} T1 -> {moving_contrast}"


# --------------------------------------------------------------------------------------------- methods
def run_ants_affine(fixed: str, moving: str, args, workdir: str) -> dict:
    """ANTs affine only (antspyx ``type_of_transform="Affine"``, centre-of-mass start; labels genericLabel)."""
    import ants

    out = os.path.join(workdir, "ants-affine")
    os.makedirs(out, exist_ok=True)
    tick = time.perf_counter()
    fixed_img = ants.image_read(bench.image_path(fixed))
    moving_img = ants.image_read(bench.image_path(moving))
    moving_lab = ants.image_read(bench.label_path(moving))
    reg = ants.registration(fixed_img, moving_img, type_of_transform="Affine", outprefix=os.path.join(out, "aff_"))
    warped_lab = ants.apply_transforms(fixed_img, moving_lab, transformlist=reg["fwdtransforms"],
                                       interpolator="genericLabel")
    ants.image_write(reg["warpedmovout"], os.path.join(out, "warped.nii.gz"))
    ants.image_write(warped_lab, os.path.join(out, "warped_labels.nii.gz"))
    seconds = time.perf_counter() - tick
    det = float(np.linalg.det(np.array(ants.read_transform(reg["fwdtransforms"][0]).parameters[:9]).reshape(3, 3)))
    fixed_lab = sitk.GetArrayFromImage(sitk.ReadImage(bench.label_path(fixed)))
    return {"dice": bench.dice_mean(warped_lab.numpy().transpose(2, 1, 0), fixed_lab), "fold_fraction": float(det <= 0),
            "detj_min": det, "detj_max": det, "seconds": seconds}


def run_method(method: str, fixed: str, moving: str, args, workdir: str) -> dict:
    if method == "ants-affine":
        return run_ants_affine(fixed, moving, args, workdir)
    return bench.run_method(method, fixed, moving, args, workdir)


# ------------------------------------------------------------------------------------------------ main
def floats(text: str) -> tuple[float, ...]:
    return tuple(float(t) for t in text.split(",") if t.strip())


def names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip() and t.strip().lower() != "none"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5, help="pairs per set (default 5)")
    ap.add_argument("--contrasts", default="T1,T2,FLAIR", help="moving contrasts of the whole-head sets ('none')")
    ap.add_argument("--icbm", default="T1,T2", help="moving contrasts of the ICBM sets ('none' to skip)")
    ap.add_argument("--methods", default="affine,ants-affine,fast,default,accurate,syn,greedy,elastix")
    ap.add_argument("--similarity", default="auto", help="the similarity of the avsm rows: auto, lncc or mi")
    ap.add_argument("--spacing", type=floats, default=(1.0, 1.0, 2.5), help="moving grid spacing, mm (x,y,z)")
    ap.add_argument("--fov", type=floats, default=(0.70, 0.85), help="range of the head's z extent kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(CACHE), help="folder of the synthesised volumes")
    ap.add_argument("--out", default=None, help="markdown tables; per-pair rows to <out stem>_pairs.csv")
    ap.add_argument("--resume", action="store_true", help="run only the rows <out stem>_pairs.csv lacks or failed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--avsm-model", default=None)
    ap.add_argument("--voxelmorph-model", default=None)
    ap.add_argument("--network-spacing", type=float, default=None)
    ap.add_argument("--instance-opt", type=int, default=20)
    args = ap.parse_args(argv)
    for name in ("working_spacing", "vsvf_iterations", "vsvf_learning_rate", "vsvf_regularisation", "vsvf_time_steps",
                 "vsvf_map_resolution_factor", "vsvf_sigmas", "vsvf_sigma_weights", "vsvf_lncc"):
        setattr(args, name, None)  # malf_accuracy's runners read these option names
    if args.resume and not args.out:
        ap.error("--resume needs --out")
    methods, contrasts, icbm = names(args.methods), names(args.contrasts), names(args.icbm)
    for contrast in contrasts:
        if contrast not in CONTRASTS:
            ap.error(f"unknown contrast {contrast!r} (T1, T2, FLAIR)")
    if (contrasts and not SYNTHSEG.exists()) or (icbm and not ICBM.exists()):
        ap.exit(2, f"needs {SYNTHSEG} and {ICBM} (../shared/data beside the repository, or AVSM_SHARED_DATA)\n")
    import torch

    torch.set_num_threads(args.threads)
    spacing_tag = "x".join(f"{s:g}" for s in args.spacing)
    folder = Path(args.cache) / f"seed{args.seed}_sp{spacing_tag}_fov{args.fov[0]:g}-{args.fov[1]:g}"
    folder.mkdir(parents=True, exist_ok=True)

    rows_path = bench.pair_rows_path(args.out) if args.out else None
    done = {}
    if args.resume and rows_path.exists():
        done = {(r["method"], r["fixed"], r["moving"]): r for r in bench.read_pair_rows(rows_path) if not r["error"]}
        print(f"resuming: {len(done)} rows kept from {rows_path}", flush=True)
    if rows_path is not None:
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        bench.write_pair_rows(rows_path, list(done.values()))

    template: list = []
    cases = [(contrast, k, fixed, moving) for contrast in contrasts
             for k, (fixed, moving) in enumerate(head_pairs(args.pairs))]
    cases += [("icbm:" + contrast, k, None, None) for contrast in icbm for k in range(args.pairs)]
    rows, sets = [], {}
    for contrast, k, fixed, moving in cases:
        if contrast.startswith("icbm:"):
            fixed_key, moving_key = "icbm_T1", f"icbm_{contrast[5:]}_k{k}"
        else:
            fixed_key, moving_key = f"head{fixed}_T1", f"head{moving}_{contrast}_k{k}"
        sets.setdefault(pair_set(fixed_key, moving_key), []).append((fixed_key, moving_key))
        if all((m, fixed_key, moving_key) in done for m in methods):
            rows += [done[(m, fixed_key, moving_key)] for m in methods]
            continue
        if contrast.startswith("icbm:"):
            icbm_case(folder, k, contrast[5:], args, template)
        else:
            head_case(folder, k, fixed, moving, contrast, args)
        for method in methods:
            if (method, fixed_key, moving_key) in done:
                rows.append(done[(method, fixed_key, moving_key)])
                continue
            row = {"method": method, "fixed": fixed_key, "moving": moving_key, "error": None}
            with tempfile.TemporaryDirectory(prefix="whole_head_") as workdir:
                try:
                    row.update(run_method(method, fixed_key, moving_key, args, workdir))
                except Exception as exc:  # one failing method must not lose the others' numbers
                    row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            if rows_path is not None:
                bench.write_pair_rows(rows_path, [row], append=True)
            print(f"{fixed_key} <- {moving_key} {method:11s} "
                  + (f"FAILED {row['error']}" if row["error"] else
                     f"Dice {row['dice']:.4f} folds {row['fold_fraction']:.2e} {row['seconds']:.1f} s"), flush=True)

    tables = []
    for name, pairs in sets.items():
        chosen = [r for r in rows if (r["fixed"], r["moving"]) in set(pairs)]
        header = (f"{name}: {len(pairs)} pair(s); label Dice ("
                  f"{'GM, WM, CSF' if name.startswith('ICBM') else 'the 32 brain labels'}); "
                  f"{args.threads} thread(s); similarity {args.similarity}; seconds end to end")
        tables.append(bench.markdown(bench.summarise(chosen, methods), header))
    text = "\n".join(tables)
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"written {args.out}")
    return 1 if any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
