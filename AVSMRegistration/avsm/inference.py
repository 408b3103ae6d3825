"""Network inference for the pipeline: load a checkpoint, run the affine and deformable networks on the
working grids. Instance optimisation of one pair is a further vSVF step composed after the
network's pull-back map at the optimisation's working grid (``avsm.pipeline``, ``optimise_vsvf(prior=...)``).

A checkpoint (bundled or from ``avsm train``) is a dict ``{"config": NetworkConfig dict, "state_dict": ...,
"working_spacing_mm": float}`` (training checkpoints carry more keys, which are ignored here), read with
:func:`avsm.checkpoints.load` (sha256 checked first, ``torch.load(weights_only=True)``), or held in memory
(:func:`avsm.checkpoints.in_memory`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .errors import AVSMError
from .geometry import Grid
from .checkpoints import ModelEntry, bundled_models, load_entry, resolve_model, sha256_of
from .networks import NetworkConfig, RegistrationNetwork, build_network
from .optimisation import AffineParameters, SimilarityMasks
from .optimisation.affine_opt import refine_affine


@dataclass
class LoadedNetwork:
    network: RegistrationNetwork
    config: NetworkConfig
    working_spacing_mm: float
    name: str
    sha256: Optional[str]  # None for weights held in memory


@dataclass
class Prediction:
    """What the pipeline needs: the affine, the deformable part's two maps on ``map_grid``, and a report dict.

    ``pullback_map`` is psi^{-1}: for each point x of ``map_grid`` (the fixed side) the point psi^{-1}(x) that
    the affine then takes into the moving image (the full pull-back map is phi = A ∘ psi^{-1});
    ``pushforward_map`` is psi, its inverse, on the same grid (None when the network did not compute it). Both
    are ``1 x 3 x d x h x w`` physical points, LPS mm, components (x, y, z).
    """

    affine: AffineParameters
    pullback_map: Optional[torch.Tensor]  # psi^{-1}
    pushforward_map: Optional[torch.Tensor]  # psi
    map_grid: Optional[Grid]
    info: dict


def default_model(method: str, model: Optional[str]) -> ModelEntry:
    """The checkpoint to use: ``model`` (a bundled name or a path), else the first bundled model of ``method``."""
    if model is not None:
        return resolve_model(model, method)
    for entry in bundled_models():
        if entry.method == method:
            return entry
    raise AVSMError(f"method '{method}' needs a trained network and no {method} model is bundled; "
                    "pass --model PATH to a checkpoint written by 'avsm train'")


_LOADED: dict = {}


def load_network(entry: ModelEntry) -> LoadedNetwork:
    """Check and load a checkpoint into a network in eval mode (a file's is cached by path and checksum; weights
    held in memory are built afresh each time, as they may have changed)."""
    in_memory = entry.checkpoint is not None
    key = None if in_memory else (str(entry.path), entry.sha256, entry.path.stat().st_mtime if entry.path.is_file() else None)
    if key in _LOADED:
        return _LOADED[key]
    checkpoint = load_entry(entry)
    source = entry.name if in_memory else entry.path
    config = NetworkConfig.from_dict(checkpoint["config"])
    if config.method != entry.method:
        raise AVSMError(f"model file {source} holds a {config.method} network, not a {entry.method} network")
    network = build_network(config)
    try:
        network.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise AVSMError(f"model file {source} does not match its network config: {str(error).splitlines()[0]}") from None
    network.eval()
    loaded = LoadedNetwork(network, config, float(checkpoint["working_spacing_mm"]), entry.name,
                           None if in_memory else entry.sha256 or sha256_of(entry.path))
    if not in_memory:
        _LOADED.clear()
        _LOADED[key] = loaded
    return loaded


def predict(method: str, checkpoint_entry: ModelEntry, fixed_w: torch.Tensor, fixed_grid: Grid, moving_w: torch.Tensor,
            moving_grid: Grid, initial: AffineParameters, affine_steps: Optional[int] = None,
            vsvf_steps: Optional[int] = None, progress: Optional[Callable[[float, str], None]] = None,
            affine_refine: int = 0, centre: Optional[Sequence[float]] = None,
            masks: SimilarityMasks = SimilarityMasks(), similarity: str = "lncc",
            affine_polish: Optional[Callable[[AffineParameters], AffineParameters]] = None) -> Prediction:
    """Run the network of ``checkpoint_entry`` on one pair of ``1 x 1 x D x H x W`` working tensors in [0, 1].

    ``initial`` is the starting affine (the centre-of-mass translation); ``affine_steps`` and ``vsvf_steps``
    override the network's test-time step counts. ``affine_refine`` N > 0 refines the affine network's result
    for this pair with N Adam iterations of mk-LNCC (``refine_affine``; ``centre``: the fixed image's
    centre of mass, LPS mm, the centre of the linear part; ``masks`` restrict its ``similarity``) before the
    deformable network runs from it; ``affine_polish``, when given, then takes the refined affine one step further
    (the pipeline's last step of a mutual-information affine, at the images' own resolution).
    The networks run under ``torch.inference_mode``: no autograd state.
    """
    if affine_refine and centre is None:
        raise AVSMError("affine refinement needs the fixed image's centre")
    progress = progress or (lambda fraction, message: None)
    loaded = load_network(checkpoint_entry)
    if loaded.config.method != method:
        raise AVSMError(f"model '{loaded.name}' is a {loaded.config.method} model, not a {method} model")
    network = loaded.network.to(fixed_w.device)
    matrix0, translation0 = (t[None] for t in initial.tensors(fixed_w.device))
    timings = {}
    tick = time.perf_counter()
    progress(0.0, "affine network")
    with torch.inference_mode():
        affine = network.affine(fixed_w, fixed_grid, moving_w, moving_grid, matrix0, translation0, affine_steps)
    timings["affine_network"] = time.perf_counter() - tick
    matrix = affine.matrix[0].double().cpu().numpy()
    translation = affine.translation[0].double().cpu().numpy()
    if affine_refine:
        progress(0.2, f"refining the affine ({affine_refine} iterations)")
        tick = time.perf_counter()
        refined = refine_affine(fixed_w, fixed_grid, moving_w, moving_grid, AffineParameters(matrix, translation),
                                centre, affine_refine, masks, similarity)
        matrix, translation = refined.matrix, refined.translation
        timings["affine_refine"] = time.perf_counter() - tick
    if affine_polish is not None:
        tick = time.perf_counter()
        polished = affine_polish(AffineParameters(matrix, translation))
        matrix, translation = polished.matrix, polished.translation
        timings["affine_polish"] = time.perf_counter() - tick
    progress(0.3, "deformable network")
    tick = time.perf_counter()
    with torch.inference_mode():
        linear, shift = (t[None] for t in AffineParameters(matrix, translation).tensors(fixed_w.device))
        output = network.deformable(fixed_w, fixed_grid, moving_w, moving_grid, linear, shift,
                                    vsvf_steps, with_inverse=True)
        timings["deformable_network"] = time.perf_counter() - tick
    progress(1.0, "network done")
    info = {"model": loaded.name, "model_sha256": loaded.sha256, "network": loaded.config.method,
            "working_spacing_mm": loaded.working_spacing_mm,
            "affine_steps": loaded.config.affine_steps if affine_steps is None else affine_steps,
            "affine_refine": int(affine_refine),
            "vsvf_steps": (loaded.config.vsvf_steps if vsvf_steps is None else vsvf_steps) if method == "avsm" else None,
            "map_grid_shape": list(output.map_grid.shape),
            "timings": {k: round(v, 3) for k, v in timings.items()}}
    # clone outside inference mode: the maps may enter autograd later (instance optimisation composes them)
    pushforward = output.pushforward_map.cpu().clone() if output.pushforward_map is not None else None
    return Prediction(AffineParameters(matrix, translation), output.pullback_map.cpu().clone(), pushforward,
                      output.map_grid, info)
