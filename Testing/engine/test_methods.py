"""The method and preset registry: how a call's preset and method resolve, the options each method declares,
and refusals before any work."""
import inspect

import pytest

from avsm.errors import AVSMError
from avsm.methods import (DEFAULT_INSTANCE_OPT, DEFAULT_PRESET, METHOD_NAMES, METHODS, NETWORK_METHODS, OPTIONS,
                          PRESET_NAMES, PRESETS, check_options, methods_taking, resolve)


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

    with pytest.raises(AVSMError, match=r"^option instance_opt \(--instance-opt\) does not apply to method 'vsvf-opt', "
                                        "which takes affine_iterations, vsvf_iterations, vsvf_settings$"):
        register(tmp_path / "missing.nii.gz", tmp_path / "missing.nii.gz", method="vsvf-opt", instance_opt=5)


def test_cli_refuses_a_preset_and_a_different_method_in_one_line(tmp_path, capsys):
    from avsm.cli import main

    code = main(["register", "f.nii.gz", "m.nii.gz", "-o", str(tmp_path / "out"), "--preset", "fast",
                 "--method", "vsvf-opt"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "preset 'fast' runs method 'avsm'" in err
    assert not (tmp_path / "out").exists()


# The methods' options: each declared once, with one meaning, and refused by a method that does not declare it.
RUN_SETTINGS = {"fixed", "moving", "method", "preset", "moving_labels", "fixed_labels", "device", "progress",
                "working_spacing", "fixed_mask", "moving_mask", "initial_transform", "similarity"}
"""register's parameters that every method takes: the inputs and where and how to run."""


def _sample_value(name: str, method: str):
    """A valid value of option ``name`` for ``method``."""
    if name == "model":
        from avsm.inference import default_model

        return default_model(method, None).name if METHODS[method].network else "any-model"
    if name == "vsvf_settings":
        from avsm.optimisation import VSVFSettings

        return VSVFSettings()
    return 1


def test_register_takes_as_keywords_exactly_the_declared_options_besides_the_run_settings():
    from avsm import register

    assert set(inspect.signature(register).parameters) == RUN_SETTINGS | set(OPTIONS)


def test_each_option_name_has_one_declaration_shared_by_the_methods_that_take_it():
    for method in METHODS.values():
        assert len(set(method.option_names)) == len(method.options)
        for option in method.options:
            assert OPTIONS[option.name] is option
    assert set(OPTIONS) == {"model", "network_affine_steps", "network_vsvf_steps", "affine_refine", "instance_opt",
                            "affine_iterations", "vsvf_iterations", "vsvf_settings"}
    assert methods_taking("network_affine_steps") == ("avsm", "voxelmorph")
    assert methods_taking("network_vsvf_steps") == ("avsm",)
    assert methods_taking("affine_iterations") == ("vsvf-opt", "affine")
    assert methods_taking("vsvf_iterations") == ("vsvf-opt",)


def test_every_preset_sets_only_options_its_method_declares():
    for preset in PRESETS.values():
        assert set(preset.options) <= set(METHODS[preset.method].option_names), preset.name
        check_options(preset.method, {}, preset.options)


@pytest.mark.parametrize("method, name", [(m, o) for m in METHOD_NAMES for o in OPTIONS])
def test_register_accepts_an_option_exactly_when_the_method_declares_it(tmp_path, method, name):
    """A declared option passes the checks (the run then stops at the missing input file); any other is
    refused first, in one line naming the option, its flag and the method."""
    from avsm import register

    missing = tmp_path / "missing.nii.gz"
    if name in METHODS[method].option_names:
        with pytest.raises(AVSMError, match="^fixed file not found"):
            register(missing, missing, method=method, device="cpu", **{name: _sample_value(name, method)})
    else:
        flag = f" \\({OPTIONS[name].flag}\\)" if OPTIONS[name].command_line else ""
        with pytest.raises(AVSMError, match=f"^option {name}{flag} does not apply to method '{method}', which takes "
                                            f"{', '.join(METHODS[method].option_names)}$"):
            register(missing, missing, method=method, device="cpu", **{name: _sample_value(name, method)})


@pytest.mark.parametrize("method, name", [(m.name, o.name) for m in METHODS.values() for o in m.options
                                          if o.type is int])
def test_counts_are_checked_against_their_declaration(tmp_path, method, name):
    from avsm import register

    missing = tmp_path / "missing.nii.gz"
    assert OPTIONS[name].minimum == 0
    with pytest.raises(AVSMError, match=rf"^{name} must be >= 0 \(got -1\)$"):
        register(missing, missing, method=method, device="cpu", **{name: -1})
    with pytest.raises(AVSMError, match=rf"^{name} must be a whole number \(got 2.5\)$"):
        register(missing, missing, method=method, device="cpu", **{name: 2.5})


def test_a_preset_value_is_overridden_by_the_caller_and_defaults_fill_the_rest():
    values = check_options("avsm", {"instance_opt": 5}, PRESETS["default"].options)
    assert values["instance_opt"] == 5 and values["affine_refine"] == OPTIONS["affine_refine"].default == 30
    assert check_options("avsm", {}, PRESETS["default"].options)["instance_opt"] == DEFAULT_INSTANCE_OPT
    assert check_options("avsm", {})["instance_opt"] == 0
    assert check_options("affine", {"affine_iterations": None}) == {"affine_iterations": None}


def test_an_option_no_method_declares_is_refused_by_name():
    with pytest.raises(AVSMError, match="^unknown option 'affine_steps'; the options are model, "):
        check_options("affine", {"affine_steps": 3})
