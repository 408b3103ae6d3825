"""Re-create docs/overview.png: the overview figure (grid.png) of `avsm demo --preset fast` on the bundled pair.

The figure is stored with a 256-colour palette (median cut, Floyd-Steinberg dithering) to keep it near 200 KB;
`avsm register` itself writes grid.png in full RGB. Run from the repository root with avsm importable:
    PYTHONPATH=$PWD/AVSMRegistration python scripts/make_overview_png.py
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

with tempfile.TemporaryDirectory() as folder:
    subprocess.run([sys.executable, "-m", "avsm", "demo", "-o", folder, "--preset", "fast", "--device", "cpu"], check=True)
    figure = Image.open(Path(folder) / "grid.png").convert("RGB")
    palette = figure.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    colours = palette.getpalette()[:768]
    whitest = max(range(len(colours) // 3), key=lambda i: sum(colours[3 * i:3 * i + 3]))
    colours[3 * whitest:3 * whitest + 3] = [255, 255, 255]
    palette.putpalette(colours)
    indices = np.array(figure.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG))
    indices[(np.asarray(figure) == 255).all(axis=-1)] = whitest  # the background stays pure white
    out = Image.fromarray(indices, mode="P")
    out.putpalette(colours)
    out.save(ROOT / "docs" / "overview.png", optimize=True)
print(f"wrote {ROOT / 'docs' / 'overview.png'}")
