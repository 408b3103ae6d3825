"""The headless trainer: ``avsm train CONFIG.toml`` (or ``torchrun ... -m avsm.training CONFIG.toml``)."""
from .config import TrainConfig, describe, load_config
from .trainer import train

__all__ = ["TrainConfig", "describe", "load_config", "train"]
