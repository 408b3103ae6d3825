"""``avsm.register``: the end-to-end registration pipeline and its result.

Read like the paper's figure: validate -> normalise -> working grids -> centre of mass -> affine ->
(vSVF) -> maps back to the fixed grid -> warp once from the original moving image -> det J, folds, Dice.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk
import torch

from . import __version__
from .checkpoints import ModelEntry
from .errors import AVSMError
from .export import affine_transform, full_transform, inverse_transform
from .geometry import (Grid, axis_aligned_grid_covering, image_to_tensor, physical_points, physical_to_normalised_matrix,
                       tensor_to_image)
from .imageio import (ImageLike, TransformLike, read_intensity_image, read_label_map, read_linear_transform, read_mask,
                      write_stored_gzip)
from .inference import LoadedNetwork, load_network, predict
from .jacobian import det_jacobian, fold_mask
from .maps import apply_affine, resample_map, warp_image_at, warp_labels, warp_labels_linear_at
from .methods import (AUTO_SIMILARITY, DEFAULT_PRESET, DEFAULT_SIMILARITY, DEFORMABLE_SIMILARITY, METHODS,
                      NETWORK_CHOICES, SIMILARITY_CHOICES, check_method_name, check_options)
from .methods import resolve as resolve_choice
from .metrics import dice_per_label, mean_dice
from .numerics import flush_denormals
from .optimisation import (INSTANCE_OPT_SETTINGS, VSVF_OPT_SETTINGS, AffineParameters, PriorDeformation,
                           SimilarityMasks, VSVFSettings, field_of_view, optimise_affine, optimise_vsvf)
from .optimisation.affine_opt import PITCH_STARTS_DEG, finish_affine, pitched_starts
from .optimisation.affine_polish import AGREEMENT_MM, agreeing_polish, polish_affine, polish_move_mm
from .optimisation.contrast_check import SAME_CONTRAST_MIN, contrast_agreement
from .optimisation.deformation_check import DeformationJudge
from .preprocess import centre_of_mass, normalise_intensity, resample_to_grid
from .progress import StagedProgress

MIN_OVERLAP_FRACTION = 0.05
# Output grids above this many voxels are processed in slabs to bound peak memory.
SLAB_VOXELS = 4_000_000
# report["initial_source"] when the affine starts from the images' centres of mass (no initial transform given)
CENTRE_OF_MASS = "centre of mass"


@dataclass
class RegistrationResult:
    """Everything a registration produces; ``save`` writes the output files listed in the README."""

    fixed: sitk.Image
    warped: sitk.Image
    transform: sitk.Transform
    affine: sitk.AffineTransform
    inverse: sitk.Transform
    det_jacobian: sitk.Image
    folds: sitk.Image
    report: dict
    warped_labels: Optional[sitk.Image] = None
    grid_planes: Optional[list] = field(default=None, repr=False)  # map in fixed voxel indices on 3 centre slices
    before: Optional[sitk.Image] = field(default=None, repr=False)  # moving on the fixed grid, identity transform
    fixed_labels: Optional[sitk.Image] = field(default=None, repr=False)  # for the figure's label outlines

    def save(self, outdir: str | os.PathLike) -> Path:
        """Write every output to ``outdir`` atomically: a temporary sibling folder, then a rename.

        ``outdir`` may not exist or may be empty; files of an earlier run in it are replaced only once
        the new set is complete.
        """
        from .visualise import save_overview

        outdir = Path(outdir).resolve()
        parent = outdir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.partial-", dir=parent))
        except OSError as error:
            raise AVSMError(f"output folder is not writable: {outdir} ({error.strerror})") from None
        try:
            # the image writers, the transform writer and the figure run side by side (SimpleITK's writers
            # release the GIL); the HDF5 transforms stay in one job, as HDF5 may not be built thread-safe
            with ThreadPoolExecutor(max_workers=4) as pool:
                jobs = [pool.submit(write_stored_gzip, self.det_jacobian, staging / "jacobian.nii.gz")]
                jobs += [pool.submit(sitk.WriteImage, image, str(staging / name), True)
                         for name, image in (("warped.nii.gz", self.warped), ("folds.nii.gz", self.folds),
                                             ("warped_labels.nii.gz", self.warped_labels))
                         if image is not None]
                jobs.append(pool.submit(_write_transforms, staging, (("transform.h5", self.transform),
                                                                     ("affine.tfm", self.affine),
                                                                     ("inverse.h5", self.inverse))))
                spacing = self.fixed.GetSpacing()
                extra = {name: sitk.GetArrayViewFromImage(image) for name, image in (
                    ("before", self.before), ("warped_labels", self.warped_labels), ("fixed_labels", self.fixed_labels))
                    if image is not None}
                jobs.append(pool.submit(save_overview, staging / "grid.png", sitk.GetArrayViewFromImage(self.fixed),
                                        sitk.GetArrayViewFromImage(self.warped), self.grid_planes,
                                        sitk.GetArrayViewFromImage(self.det_jacobian), (spacing[2], spacing[1], spacing[0]),
                                        **extra))
                for job in jobs:
                    job.result()
            (staging / "report.json").write_text(json.dumps(self.report, indent=2) + "\n")
            _replace_folder(staging, outdir)
        except AVSMError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise AVSMError(f"cannot write outputs to {outdir}: {error.strerror or error}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return outdir

    @property
    def summary(self) -> str:
        r = self.report
        text = (f"{r['method']} on {r['device']}: {r['timings']['total']:.1f} s, "
                f"folds {r['fold_count']} ({100 * r['fold_fraction']:.4f} %), "
                f"det J {r['det_jacobian_min']:.3f}..{r['det_jacobian_max']:.3f}")
        if r.get("dice_mean") is not None:
            text += f", mean Dice {r['dice_mean']:.4f} over {len(r['dice_per_label'])} labels"
        network, vsvf = r.get("network") or {}, r.get("vsvf") or {}
        dropped = [name for name, kept in (("the network's deformation", network.get("deformation_kept")),
                                           ("instance optimisation", network.get("instance_opt_kept")),
                                           ("the vSVF deformation", vsvf.get("deformation_kept"))) if kept is False]
        if dropped:
            text += f"; not kept, as they made the images less similar: {', '.join(dropped)}"
        if network.get("affine_finished"):
            text += "; the networks' affine finished at the affine method's grid"
        return text


def _write_transforms(folder: Path, named: tuple) -> None:
    for name, transform in named:
        sitk.WriteTransform(transform, str(folder / name))


def _replace_folder(staging: Path, outdir: Path) -> None:
    if outdir.exists():
        if not outdir.is_dir():
            raise AVSMError(f"output path exists and is not a folder: {outdir}")
        for item in staging.iterdir():
            os.replace(item, outdir / item.name)
        staging.rmdir()
    else:
        os.replace(staging, outdir)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise AVSMError("device 'cuda' was requested but no CUDA GPU is available (use --device cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise AVSMError(f"unknown device '{device}' (choose auto, cpu or cuda)")
    return torch.device(device)


def check_method(method: str, model: Optional[str] = None):
    """Refuse unknown methods and unknown models; for a network method return its checkpoint entry
    (``model`` by name or path, else the bundled model of that method), otherwise None."""
    if check_method_name(method).network:
        from .inference import default_model

        return default_model(method, model)
    return None


def foreground_overlap(fixed_w: torch.Tensor, fixed_grid: Grid, moving_w: torch.Tensor, moving_grid: Grid,
                       affine: AffineParameters) -> float:
    """Fraction of the fixed foreground (working intensity > 0.1 of [0, 1]) landing on moving foreground."""
    fixed_fg = (fixed_w > 0.1).float()
    moving_fg = (moving_w > 0.1).float()
    matrix, translation = affine.tensors("cpu")
    points = apply_affine(matrix, translation, physical_points(fixed_grid))
    landed = warp_labels(moving_fg, moving_grid, points)
    return float((landed * fixed_fg).sum() / fixed_fg.sum().clamp_min(1.0))


def default_working_spacing(method: str, model_entry: Optional[ModelEntry]) -> float:
    """The working grid (isotropic mm) when none is asked for: the method's (``avsm.methods``); for a network,
    its manifest's ``inference_spacing_mm`` (chosen on validation pairs), else the grid it was trained on (from the
    manifest, or the checkpoint when the manifest does not say)."""
    if model_entry is None:
        return METHODS[method].working_spacing_mm
    return (model_entry.inference_spacing_mm or model_entry.working_spacing_mm
            or load_network(model_entry).working_spacing_mm)


def register(
    fixed: ImageLike,
    moving: ImageLike,
    method: Optional[str] = None,
    moving_labels: Optional[ImageLike] = None,
    fixed_labels: Optional[ImageLike] = None,
    device: str = "auto",
    model: Optional[str] = None,
    network_affine_steps: Optional[int] = None,
    network_vsvf_steps: Optional[int] = None,
    instance_opt: Optional[int] = None,
    progress: Optional[Callable[[str, float, str], None]] = None,
    working_spacing: Optional[float] = None,
    vsvf_settings: Optional[VSVFSettings] = None,
    affine_refine: Optional[int] = None,
    preset: Optional[str] = None,
    fixed_mask: Optional[ImageLike] = None,
    moving_mask: Optional[ImageLike] = None,
    initial_transform: Optional[TransformLike] = None,
    similarity: str = DEFAULT_SIMILARITY,
    affine_iterations: Optional[int] = None,
    vsvf_iterations: Optional[int] = None,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` (SimpleITK images or paths) and return every output in memory.

    ``preset``: "fast", "default" or "accurate" (``avsm.methods.PRESETS``): a method with settings, which the
    keyword arguments given here override. With neither ``preset`` nor ``method``, the default preset runs.
    ``method``: "affine", "vsvf-opt", or a network method "avsm"/"voxelmorph".

    Each method takes only the options it declares (``avsm.methods.METHODS[name].options``, where each is
    described); any other one given (not None) is refused before any input is read:

    * network methods: ``model`` (a bundled model name, a checkpoint path or an
      :func:`avsm.checkpoints.in_memory` entry; default the bundled model), ``network_affine_steps`` and (avsm)
      ``network_vsvf_steps``, the networks' test-time step counts; ``affine_refine`` N refines the affine
      network's result for this pair with N mk-LNCC iterations before the deformable network (0: the network's
      affine as it is); ``instance_opt`` N > 0 refines the network output for this pair with N iterations of one
      more vSVF step, composed after the network's, on the network's working grid (``INSTANCE_OPT_SETTINGS``,
      or ``vsvf_settings`` when given);
    * "affine" and "vsvf-opt": ``affine_iterations``, the affine optimisation's iterations at each pyramid
      level; "vsvf-opt" also ``vsvf_iterations`` (those of each vSVF step, at the working grid alone) and
      ``vsvf_settings``.

    ``working_spacing``: isotropic mm of the working grid (default: ``default_working_spacing``, no finer than the
    finest voxel spacing of the two images).
    ``fixed_mask`` / ``moving_mask``: binary masks on the grids of their images; every optimisation (affine,
    affine refinement, vSVF, instance optimisation) compares the images only where both are non-zero; the
    networks' own passes see the whole images. ``initial_transform``: a linear ITK transform (fixed -> moving
    points, a path or a SimpleITK transform, e.g. from landmark registration) that replaces the centre-of-mass
    start of the affine stage. ``similarity``: the affine stage's ("lncc", mk-LNCC, or "mi", normalised mutual
    information for images of different contrasts, e.g. T1 against T2; the network methods then run the affine
    optimisation in place of their networks, unless one of ``avsm.methods.NETWORK_CHOICES`` is given); the
    deformable stages use squared local correlation, or with "mi" normalised gradient fields
    (``avsm.methods.DEFORMABLE_SIMILARITY``). "auto" (the default) goes on with "lncc" once the images are roughly
    aligned (by the networks, or by the mk-LNCC affine) when their local correlation agrees in sign as two scans of
    one contrast do, and otherwise starts again with "mi" (``avsm.optimisation.contrast_check``; the report's
    ``similarity`` entry says what it measured and used). The affine stage compares the images only where both were
    acquired (their fields of view). Each deformation (the network's, instance optimisation's,
    vsvf-opt's) is kept only when mutual information at full resolution finds the images closer with it than with
    what came before (``avsm.optimisation.deformation_check``; the report says which were kept).
    """
    started = time.perf_counter()
    request = _check_request(method, preset, device, working_spacing, similarity, dict(
        model=model, network_affine_steps=network_affine_steps, network_vsvf_steps=network_vsvf_steps,
        affine_refine=affine_refine, instance_opt=instance_opt, affine_iterations=affine_iterations,
        vsvf_iterations=vsvf_iterations, vsvf_settings=vsvf_settings))
    networks_run = request.network is not None and not request.without_networks
    weights = {"read": 1, "affine": 0 if networks_run else 3, "vsvf": 10 if request.method == "vsvf-opt" else 0,
               "network": 3 if networks_run else 0, "instance_opt": (request.instance_opt or 0) / 6, "outputs": 2}
    report_progress = StagedProgress(progress, weights)
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    report_progress("read", 0.0, "reading and checking inputs")
    inputs = _read_inputs(fixed, moving, fixed_labels, moving_labels, fixed_mask, moving_mask, initial_transform,
                          request.spacing, request.device,
                          affine_spacing=_affine_spacing(request, working_spacing),
                          spacing_given=working_spacing is not None)
    timings["read_and_preprocess"] = time.perf_counter() - tick
    report_progress("read", 1.0, "inputs ready")
    with flush_denormals():
        alignment = _align(request, inputs, report_progress, timings)
    tick = time.perf_counter()
    report_progress("outputs", 0.0, "warping the moving image on the fixed grid")
    outputs = _outputs_on_fixed_grid(inputs.fixed_image, inputs.moving_image, alignment.affine, alignment.pullback_map,
                                     alignment.map_grid, inputs.moving_labels)
    timings["outputs"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - started
    report_progress("outputs", 1.0, "done")
    return RegistrationResult(fixed=inputs.fixed_image, warped=outputs["warped"],
                              transform=full_transform(alignment.affine, alignment.pullback_map, alignment.map_grid),
                              affine=affine_transform(alignment.affine),
                              inverse=inverse_transform(alignment.affine, alignment.pushforward_map,
                                                        alignment.map_grid),
                              det_jacobian=outputs["det_jacobian"], folds=outputs["folds"],
                              report=_report(request, inputs, alignment, outputs, timings),
                              warped_labels=outputs["warped_labels"], grid_planes=outputs["grid_planes"],
                              before=sitk.Resample(inputs.moving_image, inputs.fixed_image, sitk.Transform(),
                                                   sitk.sitkLinear, 0.0, sitk.sitkFloat32),
                              fixed_labels=inputs.fixed_labels)


def _affine_spacing(request: "_Request", working_spacing: Optional[float]) -> Optional[float]:
    """The affine optimisation's own working grid (the affine method's) when the method may run it beside a
    deformable stage on a grid of its own (vsvf-opt; a network method in place of its networks, or to finish the
    networks' affine) and no working spacing was asked for; None: the working grid."""
    runs_affine = request.method == "vsvf-opt" or request.model_entry is not None  # built only when used
    return METHODS["affine"].working_spacing_mm if runs_affine and working_spacing is None else None


@dataclass
class _Request:
    """The checked options of one call: what runs, where, on which grid, with which counts. The method's options
    (``avsm.methods``) hold the caller's value, else the preset's, else the declared default; those of other
    methods are None."""

    method: str
    preset: Optional[str]
    model_entry: Optional[ModelEntry]
    network: Optional[LoadedNetwork]
    device: torch.device
    spacing: float
    similarity: str  # as asked: one of avsm.methods.SIMILARITY_CHOICES ("auto" until the contrast check decides)
    # a network method runs the affine optimisation in place of its networks: with mutual information (a change of
    # contrast), unless the caller chose the model or the networks' settings (avsm.methods.NETWORK_CHOICES)
    without_networks: bool
    networks_chosen: bool  # one of avsm.methods.NETWORK_CHOICES was given
    network_affine_steps: Optional[int] = None
    network_vsvf_steps: Optional[int] = None
    affine_refine: Optional[int] = None
    instance_opt: Optional[int] = None
    affine_iterations: Optional[int] = None
    vsvf_iterations: Optional[int] = None
    vsvf_settings: Optional[VSVFSettings] = None


def _check_request(method, preset, device, working_spacing, similarity, options: dict) -> _Request:
    """Resolve the preset and method and refuse what cannot run, before any input is read; ``options``: the
    methods' options by name (``avsm.methods.OPTIONS``), None where not given."""
    preset_name = DEFAULT_PRESET if preset is None and method is None else preset
    method, preset_options = resolve_choice(preset, method)
    values = check_options(method, options, preset_options)
    model_entry = check_method(method, values.pop("model", None))
    if working_spacing is not None and not working_spacing > 0:
        raise AVSMError(f"working spacing must be positive (got {working_spacing})")
    if similarity not in SIMILARITY_CHOICES:
        raise AVSMError(f"unknown similarity '{similarity}'; choose one of {', '.join(SIMILARITY_CHOICES)}")
    torch_device = resolve_device(device)
    # across a change of contrast (mi) a network method runs the affine optimisation in place of its networks, unless
    # a network option asks for them: then their weights are not even loaded
    networks_chosen = any(options.get(name) is not None for name in NETWORK_CHOICES)
    without_networks = model_entry is not None and similarity == "mi" and not networks_chosen
    network = load_network(model_entry) if model_entry is not None and not without_networks else None
    spacing = float(working_spacing or default_working_spacing(method, model_entry))
    return _Request(method, preset_name, model_entry, network, torch_device, spacing, similarity, without_networks,
                    networks_chosen, **values)


@dataclass
class _Inputs:
    """The images as read (original grids) and as the methods see them (normalised, on working grids, on the device)."""

    fixed_image: sitk.Image
    moving_image: sitk.Image
    fixed_labels: Optional[sitk.Image]
    moving_labels: Optional[sitk.Image]
    fixed_w: torch.Tensor
    fixed_grid: Grid
    moving_w: torch.Tensor
    moving_grid: Grid
    masks: SimilarityMasks  # the user's masks: where the deformable stages compare the images
    affine_masks: SimilarityMasks  # the user's masks times each image's field of view: the affine stage's
    judge: DeformationJudge  # full-resolution sample: scores deformations, takes the affine its last step
    fixed_centre: np.ndarray  # LPS mm: the centre of the affine's linear part
    initial: AffineParameters  # the affine stage's start
    initial_source: str  # CENTRE_OF_MASS or "initial transform"
    normalised: tuple[sitk.Image, sitk.Image]  # (fixed, moving) normalised, on their own grids
    user_masks: tuple[Optional[sitk.Image], Optional[sitk.Image]]  # (fixed, moving) as read
    affine_spacing: Optional[float] = None  # the affine optimisation's own working grid when not the one above
    affine_stage: Optional["_AffineStage"] = None  # its grids, once built (``affine_grids``)

    def affine_grids(self) -> "_Inputs | _AffineStage":
        """What the affine optimisation works on: the working grids, or those of ``affine_spacing`` (built once)."""
        if self.affine_spacing is None or self.affine_spacing == self.fixed_grid.spacing[0]:
            return self
        if self.affine_stage is None:
            fixed_w, fixed_grid, moving_w, moving_grid = _working_pair(*self.normalised, self.affine_spacing)
            device = self.fixed_w.device
            self.affine_stage = _AffineStage(fixed_w.to(device), fixed_grid, moving_w.to(device), moving_grid,
                                             _masks_on(self.fixed_image, self.moving_image, *self.user_masks,
                                                       fixed_grid, moving_grid, device)[1])
        return self.affine_stage


@dataclass
class _AffineStage:
    """The normalised images on the affine optimisation's own working grids, and its masks there."""

    fixed_w: torch.Tensor
    fixed_grid: Grid
    moving_w: torch.Tensor
    moving_grid: Grid
    affine_masks: SimilarityMasks


def _read_inputs(fixed, moving, fixed_labels, moving_labels, fixed_mask, moving_mask, initial_transform,
                 spacing: float, device: torch.device,
                 affine_spacing: Optional[float] = None, spacing_given: bool = True) -> _Inputs:
    """Read and check every input, normalise, resample onto the working grids, find the affine's start and build
    the full-resolution sample (``judge``), which scores a deformable stage's results and takes the affine its
    last step. ``affine_spacing``: the affine optimisation's own working grid when it is not ``spacing`` (built when
    the affine optimisation first asks for it). Unless ``spacing_given``, neither grid is finer than the finest
    voxel of the two images (:func:`_no_finer_than_the_images`)."""
    fixed_image = read_intensity_image(fixed, "fixed")
    moving_image = read_intensity_image(moving, "moving")
    moving_label_image = read_label_map(moving_labels, "moving labels", moving_image) if moving_labels is not None else None
    fixed_label_image = read_label_map(fixed_labels, "fixed labels", fixed_image) if fixed_labels is not None else None
    fixed_mask_image = read_mask(fixed_mask, "fixed mask", fixed_image) if fixed_mask is not None else None
    moving_mask_image = read_mask(moving_mask, "moving mask", moving_image) if moving_mask is not None else None
    given = None
    if initial_transform is not None:
        matrix = read_linear_transform(initial_transform)
        given = AffineParameters(matrix[:3, :3], matrix[:3, 3])
    if not spacing_given:
        spacing = _no_finer_than_the_images(spacing, fixed_image, moving_image)
        if affine_spacing is not None:
            affine_spacing = _no_finer_than_the_images(affine_spacing, fixed_image, moving_image)
    fixed_norm = normalise_intensity(fixed_image)
    moving_norm = normalise_intensity(moving_image)
    fixed_w, fixed_grid, moving_w, moving_grid = _working_pair(fixed_norm, moving_norm, spacing)
    fixed_centre = centre_of_mass(fixed_norm)
    initial = given or AffineParameters.translation_only(centre_of_mass(moving_norm) - fixed_centre)
    source = "initial transform" if given else CENTRE_OF_MASS
    overlap = foreground_overlap(fixed_w, fixed_grid, moving_w, moving_grid, initial)
    if overlap < MIN_OVERLAP_FRACTION:
        start = "the initial transform" if given else "centre-of-mass alignment"
        raise AVSMError(f"no overlap left after {start}: only {100 * overlap:.1f} % of the fixed "
                        "foreground lands on moving foreground; check that both images show the same anatomy")
    masks, affine_masks = _masks_on(fixed_image, moving_image, fixed_mask_image, moving_mask_image, fixed_grid,
                                    moving_grid, device)
    return _Inputs(fixed_image, moving_image, fixed_label_image, moving_label_image, fixed_w.to(device), fixed_grid,
                   moving_w.to(device), moving_grid, masks, affine_masks,
                   DeformationJudge.of(fixed_norm, moving_norm, fixed_mask_image, moving_mask_image), fixed_centre,
                   initial, source, (fixed_norm, moving_norm), (fixed_mask_image, moving_mask_image), affine_spacing)


def _no_finer_than_the_images(spacing: float, fixed_image: sitk.Image, moving_image: sitk.Image) -> float:
    """A method's working spacing, raised to the finest voxel spacing of the two images when that is coarser: a
    working grid finer than both images holds nothing more and costs time (``accurate``'s 1.5 mm on 2 mm scans)."""
    return max(spacing, min(min(fixed_image.GetSpacing()), min(moving_image.GetSpacing())))


def _masks_on(fixed_image: sitk.Image, moving_image: sitk.Image, fixed_mask: Optional[sitk.Image],
              moving_mask: Optional[sitk.Image], fixed_grid: Grid, moving_grid: Grid,
              device: torch.device) -> tuple[SimilarityMasks, SimilarityMasks]:
    """The user's masks on the working grids, and those times each image's field of view (the affine stage's)."""
    masks = SimilarityMasks(*(None if image is None else resample_to_grid(image, grid, antialias=False).to(device)
                              for image, grid in ((fixed_mask, fixed_grid), (moving_mask, moving_grid))))
    fields_of_view = SimilarityMasks(field_of_view(Grid.of_image(fixed_image), fixed_grid).to(device),
                                     field_of_view(Grid.of_image(moving_image), moving_grid).to(device))
    return masks, masks.times(fields_of_view)


@dataclass
class _Alignment:
    """A method's answer: the affine, the pull-back map psi^{-1} and the push-forward map psi on ``map_grid``
    (``1 x 3 x d x h x w`` LPS mm points; None for an affine alone), report entries."""

    affine: AffineParameters
    pullback_map: Optional[torch.Tensor] = None
    pushforward_map: Optional[torch.Tensor] = None
    map_grid: Optional[Grid] = None
    report: dict = field(default_factory=dict)


def _affine_alone(affine: AffineParameters, map_grid: Grid, report: dict) -> _Alignment:
    """The affine with an identity deformation on ``map_grid``: what stays when a deformation is not kept."""
    identity = physical_points(map_grid)
    return _Alignment(affine, identity, identity.clone(), map_grid, report)


def _align(request: _Request, inputs: _Inputs, report_progress: StagedProgress, timings: dict) -> _Alignment:
    """The method's alignment; ``report["similarity"]`` holds the similarity it used and, with "auto", what the
    contrast check measured."""
    run = _run_network if request.model_entry is not None else _run_optimisation
    if request.similarity != AUTO_SIMILARITY:
        alignment = run(request, inputs, report_progress, timings)
        alignment.report["similarity"] = {"used": request.similarity}
        return alignment
    checked: dict = {}
    alignment = run(dataclasses.replace(request, similarity="lncc"), inputs, report_progress, timings,
                    contrast_check=lambda *args: _same_contrast(checked, timings, *args))
    if checked["same_contrast"]:
        alignment.report["similarity"] = dict(checked, used="lncc")
        return alignment
    switched = dataclasses.replace(request, similarity="mi",
                                   without_networks=request.model_entry is not None and not request.networks_chosen)
    alignment = run(switched, inputs, report_progress, timings)
    alignment.report["similarity"] = dict(checked, used="mi")
    return alignment


def _same_contrast(checked: dict, timings: dict, grids: "_Inputs | _AffineStage", affine: AffineParameters,
                   pullback_map: Optional[torch.Tensor] = None, map_grid: Optional[Grid] = None) -> bool:
    """Whether the images, aligned by ``affine`` (and ``pullback_map``), correlate in sign like two scans of one
    contrast (``contrast_check``); records what it found in ``checked``."""
    tick = time.perf_counter()
    agreement = contrast_agreement(grids.fixed_w, grids.fixed_grid, grids.moving_w, grids.moving_grid, affine,
                                   pullback_map, map_grid)
    timings["contrast_check"] = time.perf_counter() - tick
    checked.update(requested=AUTO_SIMILARITY, contrast_agreement=round(agreement, 4),
                   same_contrast=agreement >= SAME_CONTRAST_MIN, threshold=SAME_CONTRAST_MIN)
    return checked["same_contrast"]


def _run_network(request: _Request, inputs: _Inputs, report_progress: StagedProgress, timings: dict,
                 contrast_check: Optional[Callable[..., bool]] = None) -> Optional[_Alignment]:
    """The network (affine, refinement, deformable), then ``instance_opt`` iterations for this pair if asked. Across a
    change of contrast (``request.without_networks``) the affine optimisation replaces the networks. None when
    ``contrast_check`` (called with the network's result) finds the images of different contrasts."""
    if request.without_networks:
        affine, polish = _polished(request, inputs, _optimised_affine(request, inputs, report_progress, timings),
                                   timings)
        info = {"networks_used": False, "instance_opt": int(request.instance_opt or 0)}
        alignment = _Alignment(affine, report={"network": info, "affine_polish": polish})
        judged = inputs.judge.losses(affine, [None], None)
    else:
        tick = time.perf_counter()
        prediction = predict(request.method, request.model_entry, inputs.fixed_w, inputs.fixed_grid, inputs.moving_w,
                             inputs.moving_grid, inputs.initial, affine_steps=request.network_affine_steps,
                             vsvf_steps=request.network_vsvf_steps,
                             progress=lambda f, m: report_progress("network", f, m),
                             affine_refine=request.affine_refine, centre=inputs.fixed_centre, masks=inputs.affine_masks,
                             similarity=request.similarity, affine_polish=_affine_polish(request, inputs))
        timings["network"] = timings.get("network", 0.0) + time.perf_counter() - tick
        info = dict(prediction.info, networks_used=True, instance_opt=int(request.instance_opt or 0))
        alignment = _Alignment(prediction.affine, prediction.pullback_map, prediction.pushforward_map,
                               prediction.map_grid, {"network": info})
        judged = inputs.judge.losses(alignment.affine, [None, alignment.pullback_map], alignment.map_grid)
        info.update(deformation_kept=judged[1] < judged[0], check_loss_affine=round(judged[0], 5),
                    check_loss_network=round(judged[1], 5))
        if judged[1] >= judged[0]:  # the network warped the images apart: keep its affine, with an identity deformation
            alignment = _affine_alone(alignment.affine, alignment.map_grid, alignment.report)
        if contrast_check is not None and not contrast_check(inputs, alignment.affine, alignment.pullback_map,
                                                             alignment.map_grid):
            return None
        if judged[1] >= judged[0] and request.similarity == "lncc" and request.affine_refine:
            # outside the networks' domain the affine is the result: finish it where the affine method ends
            tick = time.perf_counter()
            report_progress("network", 1.0, "the networks' deformation was not kept: finishing their affine")
            stage = inputs.affine_grids()
            finished = finish_affine(stage.fixed_w, stage.fixed_grid, stage.moving_w, stage.moving_grid,
                                     alignment.affine, inputs.fixed_centre, stage.affine_masks)
            timings["affine_finish"] = time.perf_counter() - tick
            finished, polish = _polished(request, inputs, finished, timings, stage="affine_finish")
            judged = inputs.judge.losses(finished, [None], None)  # what instance optimisation must then improve on
            info.update(affine_finished=True, check_loss_affine_finished=round(judged[0], 5))
            alignment = _affine_alone(finished, alignment.map_grid, dict(alignment.report, affine_polish=polish))
    if not request.instance_opt:
        return alignment
    tick = time.perf_counter()
    settings = dataclasses.replace(request.vsvf_settings or INSTANCE_OPT_SETTINGS, iterations=request.instance_opt)
    prior = (None if alignment.pullback_map is None
             else PriorDeformation(alignment.pullback_map, alignment.pushforward_map, alignment.map_grid))
    refined = optimise_vsvf(inputs.fixed_w, inputs.fixed_grid, inputs.moving_w, inputs.moving_grid, alignment.affine,
                            settings, prior=prior, masks=inputs.masks,
                            similarity=DEFORMABLE_SIMILARITY[request.similarity],
                            progress=lambda f, m: report_progress("instance_opt", f, m))
    timings["instance_opt"] = time.perf_counter() - tick
    before = min(judged)
    after = inputs.judge.losses(alignment.affine, [refined.pullback_map], refined.map_grid)[0]
    info.update(instance_opt_map_grid_shape=list(refined.map_grid.shape),
                final_instance_similarity_loss=refined.losses[-1][0], instance_opt_kept=after < before,
                check_loss_instance_opt=round(after, 5))
    if after >= before:  # local correlation led astray (e.g. across a change of contrast): keep the start
        return alignment
    return _Alignment(alignment.affine, refined.pullback_map.cpu(), refined.pushforward_map.cpu(), refined.map_grid,
                      alignment.report)


def _affine_polish(request: _Request, inputs: _Inputs) -> Optional[Callable[[AffineParameters], AffineParameters]]:
    """With mutual information, the affine's last step at the images' own resolution (``affine_polish``); none when
    the affine optimisation is asked for no iterations (the start is kept as it is)."""
    if request.similarity != "mi" or request.affine_iterations == 0:
        return None
    return lambda affine: polish_affine(inputs.judge, affine, inputs.fixed_centre)


def _optimised_affine(request: _Request, inputs: _Inputs, report_progress: StagedProgress,
                      timings: dict) -> AffineParameters:
    """The affine optimisation from the start (multi-scale, its own schedule or ``affine_iterations`` per level, on
    ``inputs.affine_stage``'s grids when there are such); :func:`_polished` takes it its last step."""
    tick = time.perf_counter()
    schedule = {} if request.affine_iterations is None else {"iterations": (request.affine_iterations,) * 3}
    stage = inputs.affine_grids()
    # mutual information has local minima in how far a head is nodded: from the centre of mass, try pitched starts too
    starts = (pitched_starts(inputs.initial, inputs.fixed_centre, PITCH_STARTS_DEG)
              if request.similarity == "mi" and inputs.initial_source == CENTRE_OF_MASS else [])
    affine = optimise_affine(stage.fixed_w, stage.fixed_grid, stage.moving_w, stage.moving_grid, inputs.initial,
                             inputs.fixed_centre, **schedule, masks=stage.affine_masks,
                             similarity=request.similarity, starts=starts,
                             progress=lambda f, m: report_progress("affine", f, m))
    timings["affine"] = timings.get("affine", 0.0) + time.perf_counter() - tick  # both, when "auto" runs it twice
    return affine


def _polished(request: _Request, inputs: _Inputs, affine: AffineParameters, timings: dict,
              stage: str = "affine") -> tuple[AffineParameters, Optional[dict]]:
    """The optimised affine's last step at the images' own resolution (``affine_polish``, its seconds added to
    ``timings[stage]``) and what it did (kept, and how far it moved the sampled voxels): kept with mutual
    information; with local correlation only while no step moves them by ``AGREEMENT_MM`` or more (it stops at the
    first that does). None when the affine optimisation is asked for no iterations (the start is kept as it is)."""
    if request.affine_iterations == 0:
        return affine, None
    tick = time.perf_counter()
    if request.similarity == "mi":
        polished = polish_affine(inputs.judge, affine, inputs.fixed_centre)
        move = polish_move_mm(inputs.judge, affine, polished)
    else:
        polished, move = agreeing_polish(inputs.judge, affine, inputs.fixed_centre, AGREEMENT_MM)
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - tick
    return (polished or affine), {"kept": polished is not None, "move_mm": round(move, 3)}


def _run_optimisation(request: _Request, inputs: _Inputs, report_progress: StagedProgress, timings: dict,
                      contrast_check: Optional[Callable[..., bool]] = None) -> Optional[_Alignment]:
    """Multi-scale affine optimisation, then (vsvf-opt) the vSVF momentum optimised for this pair. None when
    ``contrast_check`` (called with the affine) finds the images of different contrasts."""
    affine = _optimised_affine(request, inputs, report_progress, timings)
    if contrast_check is not None and not contrast_check(inputs.affine_grids(), affine):
        return None
    affine, polish = _polished(request, inputs, affine, timings)
    if request.method != "vsvf-opt":
        return _Alignment(affine, report={"affine_polish": polish})
    tick = time.perf_counter()
    steps = _vsvf_steps(request.vsvf_settings or VSVF_OPT_SETTINGS)
    if request.vsvf_iterations is not None:
        steps = [dataclasses.replace(step, iterations=request.vsvf_iterations, levels=None) for step in steps]
    result, vsvf_steps = None, []
    for index, step in enumerate(steps):
        prior = None if result is None else PriorDeformation(result.pullback_map, result.pushforward_map,
                                                             result.map_grid)
        result = optimise_vsvf(inputs.fixed_w, inputs.fixed_grid, inputs.moving_w, inputs.moving_grid, affine, step,
                               masks=inputs.masks, similarity=DEFORMABLE_SIMILARITY[request.similarity],
                               prior=prior, progress=_step_progress(report_progress, index, len(steps)))
        vsvf_steps.append({"iterations": len(result.losses), "time_steps": step.time_steps,
                           "regularisation": step.regularisation, "map_grid_shape": list(result.map_grid.shape),
                           "final_similarity_loss": result.losses[-1][0] if result.losses else None})
    timings["vsvf"] = time.perf_counter() - tick
    # the last step's entries (its map grid is the result's), the iterations of all, and each step's when several
    vsvf = dict(vsvf_steps[-1], iterations=sum(step["iterations"] for step in vsvf_steps))
    if len(vsvf_steps) > 1:
        vsvf["steps"] = vsvf_steps
    judged = inputs.judge.losses(affine, [None, result.pullback_map], result.map_grid)
    vsvf.update(deformation_kept=judged[1] < judged[0], check_loss_affine=round(judged[0], 5),
                check_loss_vsvf=round(judged[1], 5))
    if judged[1] >= judged[0]:  # local correlation led astray (e.g. across a change of contrast): the affine alone
        return _affine_alone(affine, result.map_grid, {"vsvf": vsvf, "affine_polish": polish})
    return _Alignment(affine, result.pullback_map.cpu(), result.pushforward_map.cpu(), result.map_grid,
                      {"vsvf": vsvf, "affine_polish": polish})


def _step_progress(report_progress: StagedProgress, index: int, count: int) -> Callable[[float, str], None]:
    """Progress of vSVF step ``index`` of ``count``, as its share of the "vsvf" stage."""
    if count == 1:
        return lambda fraction, message: report_progress("vsvf", fraction, message)
    return lambda fraction, message: report_progress("vsvf", (index + fraction) / count,
                                                     f"step {index + 1}/{count}, {message}")


def _vsvf_steps(settings: VSVFSettings) -> list[VSVFSettings]:
    """The vSVF steps that ``settings`` describe, first to last: itself, then its ``refinement`` chain."""
    steps = []
    while settings is not None:
        steps.append(dataclasses.replace(settings, refinement=None))
        settings = settings.refinement
    return steps


def _report(request: _Request, inputs: _Inputs, alignment: _Alignment, outputs: dict, timings: dict) -> dict:
    """report.json: what ran, how long each stage took, the map's det J and folds, Dice when labels allow."""
    dice = None
    if outputs["warped_labels"] is not None and inputs.fixed_labels is not None:
        dice = dice_per_label(sitk.GetArrayViewFromImage(outputs["warped_labels"]),
                              sitk.GetArrayViewFromImage(inputs.fixed_labels))
    det = outputs["det_array"]
    network = None if request.without_networks else request.network
    return {
        "method": request.method, "preset": request.preset,
        "model": network.name if network else None, "model_sha256": network.sha256 if network else None,
        "device": str(request.device), "version": __version__,
        "working_spacing_mm": float(inputs.fixed_grid.spacing[0]),
        "affine_working_spacing_mm": float((inputs.affine_stage or inputs).fixed_grid.spacing[0]),
        "fixed_size": list(inputs.fixed_image.GetSize()), "moving_size": list(inputs.moving_image.GetSize()),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "fold_count": int((det <= 0).sum()), "fold_fraction": float((det <= 0).mean()),
        "det_jacobian_min": float(det.min()), "det_jacobian_max": float(det.max()),
        "affine_matrix": alignment.affine.as_4x4().tolist(),
        "initial_affine": inputs.initial.as_4x4().tolist(), "initial_source": inputs.initial_source,
        "affine_similarity": alignment.report["similarity"]["used"],
        "similarity": alignment.report["similarity"],
        "masks": [name for name, mask in (("fixed", inputs.masks.fixed), ("moving", inputs.masks.moving))
                  if mask is not None],
        "dice_mean": mean_dice(dice) if dice is not None else None,
        "dice_per_label": {str(k): round(v, 5) for k, v in dice.items()} if dice is not None else None,
        "vsvf": alignment.report.get("vsvf"), "network": alignment.report.get("network"),
        "affine_polish": alignment.report.get("affine_polish"),
    }


def _working_pair(fixed_norm: sitk.Image, moving_norm: sitk.Image, spacing: float):
    """(fixed_w, fixed_grid, moving_w, moving_grid): each normalised image resampled (anti-aliased) onto an
    axis-aligned grid of isotropic ``spacing`` mm covering it; tensors ``1 x 1 x D x H x W`` on the CPU."""
    fixed_grid = axis_aligned_grid_covering(Grid.of_image(fixed_norm), spacing)
    moving_grid = axis_aligned_grid_covering(Grid.of_image(moving_norm), spacing)
    return resample_to_grid(fixed_norm, fixed_grid), fixed_grid, resample_to_grid(moving_norm, moving_grid), moving_grid


def _outputs_on_fixed_grid(fixed_image: sitk.Image, moving_image: sitk.Image, affine: AffineParameters,
                           pullback_map: Optional[torch.Tensor], map_grid: Optional[Grid],
                           moving_labels: Optional[sitk.Image]) -> dict:
    """The full map phi = A ∘ psi^{-1} on the fixed grid (``pullback_map`` psi^{-1} on ``map_grid``, None for
    an affine alone), the warped image/labels (one interpolation), det J and folds.

    The full-resolution map is built once, directly in the moving grid's ``grid_sample`` coordinates
    ``q = N phi + n``: the affine and N are applied to the small map before it is resampled (trilinear
    interpolation is linear), so no per-voxel matrix product is needed. det J of phi is det J of q / det N.
    """
    fixed_grid = Grid.of_image(fixed_image)
    moving_grid = Grid.of_image(moving_image)
    to_normalised = physical_to_normalised_matrix(moving_grid)  # moving LPS -> grid_sample coordinates
    to_moving = to_normalised @ affine.as_4x4()
    with torch.no_grad():
        if pullback_map is None:
            q = physical_points(fixed_grid, then=to_moving)
        else:
            matrix = torch.as_tensor(to_moving[:3, :3], dtype=pullback_map.dtype)
            translation = torch.as_tensor(to_moving[:3, 3], dtype=pullback_map.dtype)
            q = resample_map(apply_affine(matrix, translation, pullback_map), map_grid, fixed_grid,
                             chunk_slices=_slab(fixed_grid))
        coordinates = q.permute(0, 2, 3, 4, 1)  # B x D x H x W x 3, as grid_sample takes them
        warped = warp_image_at(image_to_tensor(moving_image), moving_grid, coordinates)
        warped_labels = None
        if moving_labels is not None:
            warped_labels = tensor_to_image(warp_labels_linear_at(image_to_tensor(moving_labels), coordinates),
                                            fixed_grid, moving_labels.GetPixelID())
        # float32 is enough: neighbouring values of q differ by ~1e-2 and are exact to ~1e-7
        det = det_jacobian(q, fixed_grid).div_(float(np.linalg.det(to_normalised[:3, :3])))
        to_index = torch.as_tensor(np.linalg.inv(fixed_grid.index_to_physical_matrix()) @ np.linalg.inv(to_normalised),
                                   dtype=torch.float32)
        centre = [n // 2 for n in fixed_grid.shape]
        planes = [q[0, :, centre[0]], q[0, :, :, centre[1]], q[0, :, :, :, centre[2]]]
        grid_planes = [(torch.einsum("ij,jhw->ihw", to_index[:3, :3], p) + to_index[:3, 3, None, None]).flip(0).numpy()
                       for p in planes]  # (z, y, x) fixed voxel indices of the map on each centre slice
    det_image = tensor_to_image(det, fixed_grid, sitk.sitkFloat32)
    det_array = det[0, 0].numpy()
    return {
        "warped": tensor_to_image(warped, fixed_grid, sitk.sitkFloat32),
        "warped_labels": warped_labels,
        "det_jacobian": det_image,
        "folds": tensor_to_image(fold_mask(det).to(torch.uint8), fixed_grid, sitk.sitkUInt8),
        "det_array": det_array,
        "grid_planes": grid_planes,
    }


def _slab(grid: Grid) -> Optional[int]:
    per_slice = grid.shape[1] * grid.shape[2]
    return max(SLAB_VOXELS // per_slice, 1) if grid.num_voxels > SLAB_VOXELS else None
