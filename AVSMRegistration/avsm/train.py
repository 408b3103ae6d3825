"""``torchrun ... -m avsm.train CONFIG.toml`` (DESIGN §1): the same as ``python -m avsm.training``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
