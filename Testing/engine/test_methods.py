"""The method and preset registry: how a call's preset and method resolve, and refusals before any work."""
import pytest

from avsm.errors import AVSMError
from avsm.methods import DEFAULT_PRESET, METHOD_NAMES, NETWORK_METHODS, PRESET_NAMES, PRESETS, resolve


def test_every_preset_runs_a_registered_method_and_the_default_is_a_preset():
    assert DEFAULT_PRESET in PRESET_NAMES
    assert set(PRESET_NAMES) == {"fast", "default", "accurate"}
    for preset in PRESETS.values():
        assert preset.method in METHOD_NAMES and preset.description
    assert set(NETWORK_METHODS) == {"avsm", "voxelmorph"}


def test_neither_preset_nor_method_gives_the_default_preset():
    assert resolve(None, None) == (PRESETS[DEFAULT_PRESET].method, PRESETS[DEFAULT_PRESET].options)


def test_a_method_alone_runs_with_its_own_defaults():
    assert resolve(None, "vsvf-opt") == ("vsvf-opt", {})
    assert resolve(None, "avsm") == ("avsm", {})


def test_a_preset_with_its_own_method_is_accepted_and_another_method_is_refused():
    assert resolve("fast", "avsm") == ("avsm", {"instance_opt": 0})
    with pytest.raises(AVSMError, match="preset 'accurate' runs method 'vsvf-opt', not 'avsm'"):
        resolve("accurate", "avsm")


@pytest.mark.parametrize("preset, method, message", [("quick", None, "unknown preset 'quick'; choose one of fast"),
                                                     (None, "syn", "unknown method 'syn'; choose one of avsm")])
def test_unknown_names_are_refused_with_the_choices(preset, method, message):
    with pytest.raises(AVSMError, match=message):
        resolve(preset, method)


def test_register_refuses_instance_optimisation_without_a_network_before_reading(tmp_path):
    from avsm import register

    with pytest.raises(AVSMError, match="--instance-opt applies to the network methods"):
        register(tmp_path / "missing.nii.gz", tmp_path / "missing.nii.gz", method="vsvf-opt", instance_opt=5)


def test_cli_refuses_a_preset_and_a_different_method_in_one_line(tmp_path, capsys):
    from avsm.cli import main

    code = main(["register", "f.nii.gz", "m.nii.gz", "-o", str(tmp_path / "out"), "--preset", "fast",
                 "--method", "vsvf-opt"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "preset 'fast' runs method 'avsm'" in err
    assert not (tmp_path / "out").exists()
