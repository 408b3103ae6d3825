"""``python -m avsm.training CONFIG.toml [--resume auto|PATH] [--stop-after N]`` (works under torchrun)."""
import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))
