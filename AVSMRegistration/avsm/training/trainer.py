"""``avsm train``: the headless trainer (curriculum, validation, TensorBoard, checkpoints, exact resume, DDP).

Order of work, so that bad input fails before anything is written or any step is taken: the config is
validated (:func:`load_config`), the data listed and checked from headers, a checkpoint to resume from is
verified (sha256 sidecar, then ``torch.load(weights_only=True)``) and matched against the config; only
then are the cache, the TensorBoard log and checkpoints written.

Determinism: the weights are initialised from ``seed``; the pairs of step ``n`` on rank ``r`` are drawn
from a ``torch.Generator`` seeded with (seed, r, n), so a resumed run draws exactly the pairs the
uninterrupted run would have; model, optimiser, scheduler, step and the global torch RNG are restored
from the checkpoint. Validation draws nothing from training's random streams.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the objective is wrapped in
``DistributedDataParallel`` (gloo on CPU, nccl on GPU); rank 0 builds the cache, validates, logs and
writes checkpoints.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from .. import __version__, checkpoints
from ..errors import AVSMError
from ..jacobian import det_jacobian
from ..maps import warp_labels
from ..metrics import dice_per_label, mean_dice
from ..networks import NetworkConfig, build_network
from ..networks.affine_net import batched_affine_map
from ..optimisation.affine_opt import refine_affines
from .config import TrainConfig, load_config
from .data import PairSource, Subject, check_subjects, list_label_maps, list_subjects, load_cached, training_grid
from .objective import STAGES, Objective
from .synthetic import synthesise

VALIDATION_STREAM = 2**31 - 1  # the "rank" of validation's random stream: no training rank uses it
TRAINING_KEYS = (*checkpoints.NETWORK_KEYS, "train_config", "step", "stage", "optimiser", "scheduler", "torch_rng")


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(device: torch.device) -> Distributed:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def stage_at(epoch: int, config: TrainConfig) -> Optional[str]:
    t = config.train
    bounds = np.cumsum([t.affine_epochs, t.affine_multi_epochs, t.deformable_epochs, t.deformable_multi_epochs])
    for stage, bound in zip(STAGES, bounds):
        if epoch < bound:
            return stage
    return None


def total_epochs(config: TrainConfig) -> int:
    t = config.train
    return t.affine_epochs + t.affine_multi_epochs + t.deformable_epochs + t.deformable_multi_epochs


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The random stream of one step on one rank (a pure function of its three numbers)."""
    entropy = np.random.SeedSequence([seed, rank, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(entropy[0]) << 32 | int(entropy[1]))


def validation_pair_indices(count: int, n: int) -> list[tuple[int, int]]:
    """The first ``count`` (fixed, moving) index pairs of ``n`` validation subjects, all distinct: neighbours first
    (0<-1, 1<-2, ...), then the next offset."""
    return [(k % n, (k % n + 1 + k // n) % n) for k in range(min(count, n * (n - 1)))]


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint to resume from: its sha256 sidecar must be there and match."""
    return checkpoints.load(path, keys=TRAINING_KEYS, require_checksum=True, what="checkpoint")


def initial_weights(path: Path, network: NetworkConfig) -> dict:
    """The state dict of a model or training checkpoint (sha256 sidecar checked when present) for fine-tuning.

    The weights must fit the config's network (same method, same parameter names and shapes); fields without
    weights may differ, e.g. the multi-Gaussian sigmas, RK4 steps or test-time step counts to fine-tune for.
    """
    state = checkpoints.load(path, what="init_weights")
    source = NetworkConfig.from_dict(state["config"])
    expected = {k: tuple(v.shape) for k, v in build_network(network).state_dict().items()}
    held = {k: tuple(v.shape) for k, v in state["state_dict"].items()}
    if source.method != network.method or held != expected:
        held_fields, wanted_fields = source.to_dict(), network.to_dict()
        changed = sorted(k for k in held_fields if held_fields[k] != wanted_fields[k])
        raise AVSMError(f"init_weights {path} holds a network with a different [network] section than the config: "
                        f"its weights do not fit (fields that differ: {', '.join(changed) or 'none'})")
    return state["state_dict"]


def checkpoints_in(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("step_*.pt"))


def resolve_resume(resume: Optional[str], run_dir: Path) -> Optional[Path]:
    existing = checkpoints_in(run_dir)
    if resume is None:
        if existing:
            raise AVSMError(f"run folder {run_dir} already holds checkpoints; resume with --resume auto or choose "
                            "another run_dir (nothing was overwritten)")
        return None
    if resume == "auto":
        if not existing:
            raise AVSMError(f"--resume auto: no checkpoint in {run_dir / 'checkpoints'}")
        return existing[-1]
    return Path(resume)


class Trainer:
    def __init__(self, config: TrainConfig, resume: Optional[str] = None):
        self.config = config
        t = config.train
        torch.set_num_threads(t.threads)
        if t.device == "cuda" and not torch.cuda.is_available():
            raise AVSMError("train.device is 'cuda' but no CUDA GPU is available")
        self.device = torch.device("cuda" if t.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
        self.run_dir = config.path(config.run_dir)
        # --- checks that write nothing ---
        if config.data.tensor_cache:
            # imported here, not at the top: python -m avsm.training.tensor_cache must find it unimported
            from .tensor_cache import read as read_tensor_cache
        self.cached = read_tensor_cache(config) if config.data.tensor_cache else None
        if self.cached is None:
            self.subjects = list_subjects(config)
            check_subjects(self.subjects)
            self.label_map_paths = list_label_maps(config)
        else:
            self.subjects = [Subject(entry["name"], None, None) for entry in self.cached["subjects"]]
            self.label_map_paths = []
        real_train = len(self.subjects) - config.data.validation_count
        if self.subjects and real_train < 2 and config.data.synthetic_fraction < 1.0:
            raise AVSMError(f"{len(self.subjects)} real subjects leave {max(real_train, 0)} for training after "
                            f"data.validation_count = {config.data.validation_count}; at least 2 are needed")
        resume_path = resolve_resume(resume, self.run_dir)
        self.state = read_checkpoint(resume_path) if resume_path is not None else None
        self.initial_weights = None
        if self.state is None and config.init_weights:
            self.initial_weights = initial_weights(config.path(config.init_weights), config.network)
        if self.state is not None:
            if NetworkConfig.from_dict(self.state["config"]) != config.network:
                raise AVSMError(f"checkpoint {resume_path} was trained with a different [network] section")
            if self.state["working_spacing_mm"] != config.data.working_spacing_mm:
                raise AVSMError(f"checkpoint {resume_path} was trained at {self.state['working_spacing_mm']} mm, "
                                f"the config says {config.data.working_spacing_mm} mm")
        self.dist = init_distributed(self.device)
        # --- from here on files are written ---
        self.grid = training_grid(config)
        if self.dist.main:
            self._load_data(build=True)
        self.dist.barrier()
        if not self.dist.main:
            self._load_data(build=False)
        torch.manual_seed(config.seed)
        self.network = build_network(config.network).to(self.device)
        self.objective = Objective(self.network, self.grid, t)
        self.step = 0
        if self.initial_weights is not None:
            self.network.load_state_dict(self.initial_weights)
        if self.state is not None:
            self.network.load_state_dict(self.state["state_dict"])
            self.step = int(self.state["step"])
            torch.set_rng_state(self.state["torch_rng"])
        self.steps_total = total_epochs(config) * t.steps_per_epoch
        self.stage = None
        self.optimiser = self.scheduler = self.model = None
        self.writer = None

    def _load_data(self, build: bool) -> None:
        n_val = self.config.data.validation_count if self.subjects else 0
        if self.cached is None:
            records = load_cached(self.subjects, self.config, "subject", build)
            label_maps = load_cached(self.label_map_paths, self.config, "labelmap", build)
        else:
            records, label_maps = self.cached["subjects"], self.cached["label_maps"]
        self.train_records = records[: len(records) - n_val] if n_val else records
        self.val_records = records[len(records) - n_val:] if n_val else []
        self.val_subjects = self.subjects[len(self.subjects) - n_val:] if n_val else []
        self.pairs = PairSource(self.config, self.train_records if self.config.data.synthetic_fraction < 1 else [],
                                label_maps)

    # ----------------------------------------------------------------------------------------------------------
    def _enter_stage(self, stage: str) -> None:
        """Trainable parameters, a fresh Adam and StepLR for the stage (or those of the checkpoint)."""
        t = self.config.train
        affine_stage = stage.startswith("affine")
        for name, parameter in self.network.named_parameters():
            parameter.requires_grad_(name.startswith("affine_net.") == affine_stage)
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        self.optimiser = torch.optim.Adam(trainable, lr=t.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimiser, t.lr_decay_epochs, t.lr_decay)
        if self.state is not None and self.state["stage"] == stage:
            self.optimiser.load_state_dict(self.state["optimiser"])
            self.scheduler.load_state_dict(self.state["scheduler"])
            self.state = None
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.model = self.objective
        self.stage = stage

    def _batch(self, step: int) -> dict:
        generator = step_generator(self.config.seed, self.dist.rank, step)
        pairs = [self.pairs.draw(generator) for _ in range(self.config.train.batch_size)]
        batch = {"fixed": torch.cat([p["fixed"] for p in pairs]).to(self.device),
                 "moving": torch.cat([p["moving"] for p in pairs]).to(self.device)}
        t = self.config.train
        if t.dice_weight > 0 and all(
                p["fixed_labels"] is not None and p["moving_labels"] is not None for p in pairs):
            fixed_onehot, moving_onehot = [], []
            for p in pairs:
                labels = torch.unique(p["fixed_labels"])
                labels = labels[labels != 0]
                chosen = labels[torch.randperm(labels.numel(), generator=generator)[: t.dice_labels_per_step]]
                fixed_onehot.append((p["fixed_labels"] == chosen.view(1, -1, 1, 1, 1)).float())
                moving_onehot.append((p["moving_labels"] == chosen.view(1, -1, 1, 1, 1)).float())
            if len({o.shape[1] for o in fixed_onehot}) == 1:
                batch["fixed_onehot"] = torch.cat(fixed_onehot).to(self.device)
                batch["moving_onehot"] = torch.cat(moving_onehot).to(self.device)
        return batch

    def validate(self, stage: str) -> dict:
        """Mean label Dice and fold fraction (det J <= 0) on the validation pairs at the working resolution
        (in the deformable stages from the refined affine when ``train.affine_refine`` > 0, as in training)."""
        t = self.config.train
        pairs = []
        if self.val_records:
            for i, j in validation_pair_indices(t.validation_pairs, len(self.val_records)):
                pairs.append((self.val_records[i]["image"], self.val_records[j]["image"],
                              self.val_records[i]["labels"], self.val_records[j]["labels"]))
        elif self.pairs.label_maps:
            for k in range(t.validation_pairs):
                generator = step_generator(self.config.seed, VALIDATION_STREAM, k)
                maps = self.pairs.label_maps
                fixed, fixed_labels = synthesise(maps[k % len(maps)]["labels"], self.grid, generator)
                moving, moving_labels = synthesise(maps[(k + 1) % len(maps)]["labels"], self.grid, generator)
                pairs.append((fixed, moving, fixed_labels, moving_labels))
        dices, folds, det_min = [], [], []
        eye = torch.eye(3, device=self.device)[None]
        zero = torch.zeros(1, 3, device=self.device)
        with torch.no_grad():
            for fixed, moving, fixed_labels, moving_labels in pairs:
                fixed, moving = fixed.to(self.device), moving.to(self.device)
                affine_steps, vsvf_steps = t.step_counts(stage)
                affine = self.network.affine(fixed, self.grid, moving, self.grid, eye, zero, affine_steps)
                if stage.startswith("affine"):
                    phi = batched_affine_map(affine.matrix, affine.translation, self.grid)
                else:
                    matrix, translation = refine_affines(fixed, moving, self.grid, affine.matrix, affine.translation,
                                                         t.affine_refine)
                    phi = self.network.deformable(fixed, self.grid, moving, self.grid, matrix, translation,
                                                  vsvf_steps).phi
                det = det_jacobian(phi.double(), self.grid)
                folds.append(float((det <= 0).double().mean()))
                det_min.append(float(det.min()))
                if fixed_labels is not None and moving_labels is not None:
                    warped = warp_labels(moving_labels.float().to(self.device), self.grid, phi)
                    dices.append(mean_dice(dice_per_label(warped[0, 0].cpu().numpy().astype(np.int64),
                                                          fixed_labels[0, 0].numpy().astype(np.int64))))
        return {"dice": float(np.mean(dices)) if dices else float("nan"),
                "fold_fraction": float(np.mean(folds)) if folds else float("nan"),
                "det_jacobian_min": float(np.min(det_min)) if det_min else float("nan"), "pairs": len(pairs)}

    def validate_native(self, stage: str) -> dict:
        """Mean label Dice, folds and det J min of the real validation pairs registered at their own resolution by
        :func:`avsm.register` with the current weights (the same pairs and step counts as :meth:`validate`).

        ``register`` runs the weights in memory (:func:`avsm.checkpoints.in_memory`); the subjects' files are only read.
        The affine stages score the affine network's own result (``affine_refine=0``); the deformable stages
        score what users get, with the engine's default affine refinement.
        Empty without labelled validation subjects, and for VoxelMorph in the affine stages.
        """
        from ..pipeline import register

        t, method = self.config.train, self.config.network.method
        subjects = [s for s in self.val_subjects if s.labels is not None]
        n = len(subjects)
        if n < 2 or (method == "voxelmorph" and stage.startswith("affine")):
            return {}
        affine_steps, vsvf_steps = t.step_counts(stage)
        options = {"network_affine_steps": affine_steps,
                   **({"network_vsvf_steps": vsvf_steps} if method == "avsm" else {}),
                   **({"affine_refine": 0} if stage.startswith("affine") else {})}
        model = checkpoints.in_memory(f"step_{self.step:07d}", self._network_payload())
        dices, folds, det_min = [], [], []
        for i, j in validation_pair_indices(t.validation_pairs, n):
            fixed, moving = subjects[i], subjects[j]
            report = register(str(fixed.image), str(moving.image), method=method, model=model,
                              moving_labels=str(moving.labels), fixed_labels=str(fixed.labels),
                              device=self.device.type, **options).report
            dices.append(report["dice_mean"])
            folds.append(report["fold_fraction"])
            det_min.append(report["det_jacobian_min"])
        return {"native_dice": float(np.mean(dices)), "native_fold_fraction": float(np.mean(folds)),
                "native_det_jacobian_min": float(np.min(det_min)), "native_pairs": len(dices)}

    def _network_payload(self) -> dict:
        return {"config": self.config.network.to_dict(), "state_dict": self.network.state_dict(),
                "working_spacing_mm": self.config.data.working_spacing_mm, "version": __version__}

    def save_checkpoint(self) -> Path:
        folder = self.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step_{self.step:07d}.pt"
        payload = {**self._network_payload(), "train_config": self.config.to_dict(), "step": self.step,
                   "stage": self.stage, "optimiser": self.optimiser.state_dict(),
                   "scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state()}
        checkpoints.save(payload, path)
        for old in checkpoints_in(self.run_dir)[: -self.config.train.keep_checkpoints]:
            old.unlink()
            checkpoints.sidecar_of(old).unlink(missing_ok=True)
        return path

    def log(self, values: dict, prefix: str) -> None:
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    self.writer.add_scalar(f"{prefix}/{key}", value, self.step)

    def budget_spent(self, started: float, budget_minutes: float) -> bool:
        """Whether the wall-clock budget since ``started`` is spent (rank 0 decides for every rank, so that all
        stop at the same step)."""
        if budget_minutes <= 0:
            return False
        spent = torch.tensor(float(time.monotonic() - started >= 60.0 * budget_minutes))
        if self.dist.world_size > 1:
            spent = spent.to(self.device)  # nccl broadcasts CUDA tensors, gloo CPU ones
            dist.broadcast(spent, 0)
        return bool(spent.item())

    def run(self, stop_after: Optional[int] = None, max_minutes: Optional[float] = None) -> Path:
        """Train up to ``stop_after`` (global step) or the end of the curriculum, or until ``max_minutes`` (default
        ``train.max_minutes``) of wall-clock time are spent: then the step reached gets a checkpoint and
        ``model.pt``. Returns the path of ``model.pt`` (written when the curriculum completes or the budget stops it)."""
        from tqdm import tqdm

        t = self.config.train
        started = time.monotonic()  # not time.time(): the calendar clock can be stepped (a sandbox's jumped a minute)
        budget = t.max_minutes if max_minutes is None else max_minutes
        out_of_time = False
        if self.dist.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        bar = tqdm(total=self.steps_total, initial=self.step, disable=None if self.dist.main else True,
                   file=sys.stderr, desc="avsm train")
        last = min(self.steps_total, stop_after) if stop_after is not None else self.steps_total
        try:
            while self.step < last:
                if self.budget_spent(started, budget):
                    out_of_time = True
                    break
                epoch = self.step // t.steps_per_epoch
                stage = stage_at(epoch, self.config)
                if stage != self.stage:
                    self._enter_stage(stage)
                self.network.train()
                batch = self._batch(self.step)
                started = time.perf_counter()
                loss, stats = self.model(batch["fixed"], batch["moving"], stage, epoch,
                                         batch.get("fixed_onehot"), batch.get("moving_onehot"))
                self.optimiser.zero_grad(set_to_none=True)
                loss.backward()
                self.optimiser.step()
                self.step += 1
                stats.update(seconds=time.perf_counter() - started, lr=self.optimiser.param_groups[0]["lr"],
                             stage=STAGES.index(stage))
                self.log(stats, "train")
                bar.update(1)
                bar.set_postfix_str(f"{stage} e{epoch} loss {stats['loss']:.4f}")
                if self.step % t.steps_per_epoch == 0:
                    if self.dist.main:
                        result = self.validate(stage)
                        if t.validation_native:
                            result.update(self.validate_native(stage))
                        self.log(result, "validation")
                        native = f", native Dice {result['native_dice']:.4f}" if "native_dice" in result else ""
                        bar.write(f"epoch {epoch} ({stage}) step {self.step}: loss {stats['loss']:.4f}, validation Dice "
                                  f"{result['dice']:.4f}, folds {result['fold_fraction']:.2e}, det J min "
                                  f"{result['det_jacobian_min']:.3f}{native}", file=sys.stdout)
                    self.scheduler.step()
                if self.dist.main and (self.step % t.checkpoint_every == 0 or self.step == last):
                    self.save_checkpoint()
                self.dist.barrier()
            if out_of_time and self.dist.main:
                if self.stage is not None and self.step % t.checkpoint_every:
                    self.save_checkpoint()
                bar.write(f"time budget of {budget:g} min spent: stopped at step {self.step} of {self.steps_total}",
                          file=sys.stdout)
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.close()
        model_path = self.run_dir / "model.pt"
        if self.dist.main and (self.step >= self.steps_total or out_of_time):
            checkpoints.save(self._network_payload(), model_path)
        self.dist.barrier()
        return model_path


def train(config_path: str | Path, resume: Optional[str] = None, stop_after: Optional[int] = None,
          max_minutes: Optional[float] = None, run_dir: Optional[str] = None) -> Path:
    """Train from a TOML config; returns the path of ``model.pt`` (written when training completes or the
    ``max_minutes`` budget stops it). ``run_dir`` replaces the config's run folder (relative to the working
    directory)."""
    config = load_config(config_path)
    if run_dir is not None:
        config.run_dir = str(Path(run_dir).resolve())
    if max_minutes is not None and max_minutes < 0:
        raise AVSMError(f"--max-minutes must be >= 0 (got {max_minutes})")
    trainer = Trainer(config, resume)
    try:
        return trainer.run(stop_after, max_minutes)
    finally:
        if trainer.dist.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
