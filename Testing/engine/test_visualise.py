"""The overview figure (grid.png): the rows for the intensity difference before and after registration and for
the label outlines, on top of fixed, warped, deformation grid and det J."""
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from avsm import register
from avsm.visualise import (AFTER_TITLE, BEFORE_TITLE, DET_TITLE, FIXED_LABEL_COLOUR, FIXED_TITLE, GAP_PX,
                            LABELS_TITLE, PANEL_PX, ROW_TITLE_PX, WARPED_LABEL_COLOUR, compose_overview,
                            label_boundaries, overview_rows, save_overview)

from engine_fixtures import SAMPLE_DATA

SHIFT_MM = (8.0, -6.0, 10.0)


def _arrays(shape, seed=0):
    volume = np.random.default_rng(seed).random(shape).astype(np.float32)
    return volume, np.ones(shape, dtype=np.float32)


def _colour_mask(panel, colour):
    return (panel == np.array(colour, dtype=np.uint8)).all(axis=-1)


def test_difference_and_label_rows_add_one_panel_height_each_with_their_titles():
    shape = (20, 24, 28)  # with spacing (2, 1, 1) the z extent (40 mm) is the longest side of two views
    volume, det = _arrays(shape)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[5:15, 6:18, 8:20] = 1
    plain = overview_rows(volume, volume, None, det, (2.0, 1.0, 1.0))
    full = overview_rows(volume, volume, None, det, (2.0, 1.0, 1.0), before=volume[::-1].copy(),
                         warped_labels=labels, fixed_labels=labels)
    assert [title for title, _ in plain] == [FIXED_TITLE, "warped moving", "deformation grid (yellow)", DET_TITLE]
    assert [title for title, _ in full][4:] == [BEFORE_TITLE, AFTER_TITLE, LABELS_TITLE]
    assert BEFORE_TITLE == "before: |fixed - moving|" and AFTER_TITLE == "after: |fixed - warped|"
    for _, panels in full[4:]:
        assert [p.shape for p in panels] == [p.shape for p in full[0][1]]
    small, large = compose_overview(plain, "t", []), compose_overview(full, "t", [])
    assert large.width == small.width
    assert large.height - small.height == 3 * (PANEL_PX + ROW_TITLE_PX + GAP_PX)
    # one label map alone still draws the outline row, with no difference rows
    only_labels = overview_rows(volume, volume, None, det, (2.0, 1.0, 1.0), warped_labels=labels)
    assert [title for title, _ in only_labels][4:] == [LABELS_TITLE]


def test_outlines_are_drawn_in_their_colour_only_on_label_boundaries():
    shape = (20, 30, 40)  # axial view 30 x 40 voxels of 1 mm: 5 panel pixels per voxel
    volume, det = _arrays(shape, seed=1)
    warped_labels = np.zeros(shape, dtype=np.int16)
    warped_labels[:, 8:22, 10:30] = 1
    warped_labels[:, 8:22, 20:30] = 2  # two labels touching: their common face is a boundary too
    fixed_labels = np.zeros(shape, dtype=np.int16)
    fixed_labels[:, 12:26, 14:34] = 3
    rows = dict(overview_rows(volume, volume, None, det, (1.0, 1.0, 1.0), warped_labels=warped_labels,
                              fixed_labels=fixed_labels))
    axial = rows[LABELS_TITLE][0]
    assert axial.shape[:2] == (150, 200)

    def upsampled_boundaries(labels):
        plane = np.repeat(np.repeat(labels[shape[0] // 2], 5, axis=0), 5, axis=1)
        return np.flipud(label_boundaries(plane))

    cyan, magenta = _colour_mask(axial, WARPED_LABEL_COLOUR), _colour_mask(axial, FIXED_LABEL_COLOUR)
    warped_edges, fixed_edges = upsampled_boundaries(warped_labels), upsampled_boundaries(fixed_labels)
    assert cyan.sum() > 200 and magenta.sum() > 200
    assert not (cyan & ~warped_edges).any()
    assert not (magenta & ~fixed_edges).any()
    # every column of the label 1 / label 2 face (voxel x = 20, panel column 99 or 100) carries the outline
    face = cyan[:, 99:101].any(axis=1)
    assert face[np.flipud(np.repeat(warped_labels[10, :, 20] > 0, 5))].all()
    # the other rows stay free of both colours
    for title, panels in rows.items():
        if title != LABELS_TITLE:
            assert not any((_colour_mask(p, WARPED_LABEL_COLOUR) | _colour_mask(p, FIXED_LABEL_COLOUR)).any()
                           for p in panels), title


def _translated(image: sitk.Image) -> sitk.Image:
    """The same voxels with the origin moved by SHIFT_MM: a copy of the image translated in physical space."""
    moved = sitk.Image(image)
    moved.SetOrigin(tuple(o + s for o, s in zip(image.GetOrigin(), SHIFT_MM)))
    return moved


@pytest.fixture(scope="module")
def translated_run(tmp_path_factory):
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"), sitk.sitkFloat32)
    fixed_mask = sitk.ReadImage(str(SAMPLE_DATA / "fixed_brainmask_2mm.nii.gz"))
    result = register(fixed, _translated(fixed), method="affine", moving_labels=_translated(fixed_mask),
                      fixed_labels=fixed_mask, affine_iterations=20, working_spacing=4.0, device="cpu")
    outdir = result.save(tmp_path_factory.mktemp("translated") / "out")
    return result, outdir


def test_before_is_the_moving_image_on_the_fixed_grid_by_the_identity(translated_run):
    result, _ = translated_run
    before = result.before
    assert (before.GetSize(), before.GetOrigin(), before.GetSpacing()) == \
        (result.fixed.GetSize(), result.fixed.GetOrigin(), result.fixed.GetSpacing())
    fixed = sitk.GetArrayViewFromImage(result.fixed)
    shift = [int(round(s / 2.0)) for s in SHIFT_MM[::-1]]  # 2 mm voxels, (z, y, x); axis y runs towards -y
    z, y, x = (n // 2 for n in fixed.shape)
    # before(p) = fixed(p - shift): voxel (z, y, x) of before is voxel (z - 5, y - 3, x - 4) of fixed
    assert sitk.GetArrayViewFromImage(before)[z, y, x] == pytest.approx(fixed[z - shift[0], y + shift[1], x - shift[2]])


def test_difference_is_darker_after_a_registration_that_undoes_a_translation(translated_run):
    result, outdir = translated_run
    arrays = {name: sitk.GetArrayFromImage(getattr(result, name))
              for name in ("fixed", "warped", "det_jacobian", "before", "warped_labels", "fixed_labels")}
    spacing = result.fixed.GetSpacing()[::-1]
    rows = dict(overview_rows(arrays["fixed"], arrays["warped"], result.grid_planes, arrays["det_jacobian"], spacing,
                              before=arrays["before"], warped_labels=arrays["warped_labels"],
                              fixed_labels=arrays["fixed_labels"]))
    for before_panel, after_panel in zip(rows[BEFORE_TITLE], rows[AFTER_TITLE]):
        assert after_panel.mean() < 0.5 * before_panel.mean()
    # save() draws the same figure, with the difference and label rows
    saved = np.asarray(Image.open(outdir / "grid.png"))
    expected = outdir.parent / "expected.png"
    save_overview(expected, arrays["fixed"], arrays["warped"], result.grid_planes, arrays["det_jacobian"], spacing,
                  before=arrays["before"], warped_labels=arrays["warped_labels"], fixed_labels=arrays["fixed_labels"])
    assert np.array_equal(saved, np.asarray(Image.open(expected)))
    labels_axial = rows[LABELS_TITLE][0]
    assert _colour_mask(labels_axial, WARPED_LABEL_COLOUR).any() and _colour_mask(labels_axial, FIXED_LABEL_COLOUR).any()
