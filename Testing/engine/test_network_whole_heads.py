"""``benchmarks/tuning/network_whole_heads.py``: a candidate model takes the bundled AVSM model's place in a models
folder of its own, on the bundled model's test-time grid when it trained on the same grid, else on its own."""
import torch

from avsm.checkpoints import bundled_models, sha256_of
from avsm.inference import default_model, load_network

from engine_fixtures import load_script


def test_a_candidate_takes_the_bundled_avsm_models_place_on_its_grid(tmp_path, monkeypatch):
    script = load_script("network_whole_heads", "benchmarks/tuning/network_whole_heads.py")
    monkeypatch.delenv("AVSM_MODELS_DIR", raising=False)
    bundled = {entry.method: entry for entry in bundled_models()}
    checkpoint = torch.load(bundled["avsm"].path, map_location="cpu", weights_only=True)
    same_grid, own_grid = tmp_path / "same_grid.pt", tmp_path / "own_grid.pt"
    torch.save(checkpoint, same_grid)
    torch.save(dict(checkpoint, working_spacing_mm=2.0), own_grid)
    for model, inference in ((same_grid, bundled["avsm"].inference_spacing_mm), (own_grid, None)):
        folder = tmp_path / model.stem
        folder.mkdir()
        script.candidate_models(model, folder)
        monkeypatch.setenv("AVSM_MODELS_DIR", str(folder))
        entries = bundled_models()
        assert [entry.method for entry in entries] == ["avsm", "voxelmorph"]
        candidate = default_model("avsm", None)
        assert candidate.path == folder / "candidate.pt" and candidate.sha256 == sha256_of(model)
        assert candidate.inference_spacing_mm == inference
        assert candidate.working_spacing_mm == float(torch.load(model, weights_only=True)["working_spacing_mm"])
        assert load_network(candidate).name == candidate.name  # the checksum holds and the weights load
        assert default_model("voxelmorph", None).sha256 == bundled["voxelmorph"].sha256
        monkeypatch.delenv("AVSM_MODELS_DIR")
