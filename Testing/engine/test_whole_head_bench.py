"""The whole-head benchmark's synthesis (benchmarks/whole_head.py): reproducible images, an oblique anisotropic
moving grid that cuts the head, contrasts in the right tissue order, and an ICBM known transform whose inverse
brings the moving labels back onto the template's. Volumes are downsampled to 2.5-3 mm to stay fast."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from engine_fixtures import load_script, shared_path


@pytest.fixture(scope="module")
def bench():
    return load_script("whole_head", "benchmarks/whole_head.py")


@pytest.fixture(scope="module")
def label_map(bench):
    return bench.load_label_map(shared_path("synthseg_label_maps") / "training_seg_02.nii.gz", spacing=3.0)


@pytest.fixture(scope="module")
def moving(bench, label_map):
    return bench.synthesise_moving(label_map, "T2", seed=[0, 2, 1, 0], spacing=(2.5, 2.5, 4.0))


@pytest.fixture(scope="module")
def template(bench):
    return bench.load_template(shared_path("mni_icbm152_2009a"), spacing=2.5)


def _dice(labels: sitk.Image, reference: sitk.Image) -> float:
    from avsm.metrics import dice_per_label, mean_dice

    return mean_dice(dice_per_label(sitk.GetArrayFromImage(labels).astype(np.int64),
                                    sitk.GetArrayFromImage(reference).astype(np.int64)))


def test_synthesis_is_deterministic_for_a_seed(bench, label_map, moving):
    again = bench.synthesise_moving(label_map, "T2", seed=[0, 2, 1, 0], spacing=(2.5, 2.5, 4.0))
    other = bench.synthesise_moving(label_map, "T2", seed=[1, 2, 1, 0], spacing=(2.5, 2.5, 4.0))
    assert np.array_equal(sitk.GetArrayViewFromImage(again.image), sitk.GetArrayViewFromImage(moving.image))
    assert np.array_equal(sitk.GetArrayViewFromImage(again.labels), sitk.GetArrayViewFromImage(moving.labels))
    assert again.image.GetOrigin() == moving.image.GetOrigin()
    assert other.image.GetOrigin() != moving.image.GetOrigin()
    fixed = [sitk.GetArrayFromImage(bench.synthesise_fixed(label_map, "T1", seed=7).image) for _ in range(2)]
    assert np.array_equal(*fixed)


def test_moving_grid_is_oblique_anisotropic_and_far_from_the_head(bench, label_map, moving):
    assert moving.image.GetSpacing() == (2.5, 2.5, 4.0)
    direction = np.array(moving.image.GetDirection()).reshape(3, 3)
    assert np.allclose(direction @ direction.T, np.eye(3)) and np.isclose(np.linalg.det(direction), 1.0)
    tilt = np.degrees(np.arccos((np.trace(direction) - 1) / 2))
    assert 10.0 <= tilt <= 20.0
    size = np.array(moving.image.GetSize())
    grid_centre = np.array(moving.image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    assert np.linalg.norm(grid_centre - bench.head_points(label_map).mean(0)) > 80.0
    assert moving.labels.GetSize() == moving.image.GetSize() and moving.labels.GetOrigin() == moving.image.GetOrigin()


def test_partial_field_of_view_cuts_the_neck_and_keeps_the_top(bench, label_map, moving):
    labels = sitk.GetArrayViewFromImage(moving.labels)  # z, y, x
    assert 0.70 <= moving.fov_fraction <= 0.85
    assert (labels[0] > 0).sum() > 50  # the head runs through the bottom face
    assert (labels[-1] > 0).sum() == 0  # and ends below the top face
    # the part of the head's voxels that land inside the moving grid
    inverse = moving.transform.GetInverse()
    points = bench.head_points(label_map, step=3)
    inside = 0
    for point in points:
        index = np.array(moving.labels.TransformPhysicalPointToContinuousIndex(inverse.TransformPoint(point.tolist())))
        inside += bool(np.all(index >= -0.5) and np.all(index <= np.array(moving.labels.GetSize()) - 0.5))
    assert 0.5 < inside / len(points) < 0.95


def test_contrasts_order_the_tissues(bench, label_map, moving):
    for seed in range(5):
        rng = np.random.default_rng(seed)
        tables = {c: bench.intensity_table(c, rng) for c in ("T1", "T2", "FLAIR")}
        white, grey, fluid = ({c: t[list(labels)] for c, t in tables.items()}
                              for labels in (bench.WHITE, bench.GREY, bench.FLUID))
        assert white["T1"].min() > grey["T1"].max() > grey["T1"].min() > fluid["T1"].max()
        assert fluid["T2"].min() > grey["T2"].max() > grey["T2"].min() > white["T2"].max()
        assert grey["FLAIR"].min() > white["FLAIR"].max() > white["FLAIR"].min() > fluid["FLAIR"].max()
    image, labels = sitk.GetArrayViewFromImage(moving.image), sitk.GetArrayViewFromImage(moving.labels)
    median = {name: np.median(image[np.isin(labels, group)])
              for name, group in (("white", bench.WHITE), ("grey", bench.GREY), ("fluid", bench.FLUID))}
    assert median["fluid"] > median["grey"] > median["white"]  # T2-like after blur, bias and noise


def test_icbm_labels_and_t2_like_contrast(bench, template):
    labels = sitk.GetArrayViewFromImage(template.labels)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    t2 = sitk.GetArrayViewFromImage(bench.template_contrast(template, "T2"))
    means = [t2[labels == label].mean() for label in (1, 2, 3)]  # GM, WM, CSF
    assert means[2] > means[0] > means[1]


def test_icbm_known_transform_inverse_brings_the_labels_back(bench, template):
    case, inverse = bench.warp_template(template, "T1", seed=[0, 0, 2])
    assert _dice(case.labels, template.labels) < 0.8  # the known transform moves the labels
    back = sitk.Resample(case.labels, template.labels, inverse, sitk.sitkNearestNeighbor, 0)
    assert _dice(back, template.labels) > 0.95


def test_pair_lists_and_sets(bench):
    pairs = bench.head_pairs(40)
    assert len(set(pairs)) == 40 and all(f != m for f, m in pairs)
    assert pairs[:2] == [("01", "02"), ("02", "03")]
    assert bench.pair_set("head01_T1", "head02_FLAIR_k0") == "whole head T1 -> FLAIR"
    assert bench.pair_set("icbm_T1", "icbm_T2_k3") == "ICBM T1 -> T2"


def test_ants_affine_row_scores_the_warped_labels(bench, tmp_path):
    pytest.importorskip("ants", reason="needs antspyx (pip install -e .[bench])")
    zz, yy, xx = np.mgrid[:40, :40, :40]
    for name, shift in (("ball_fixed", 0), ("ball_moving", 3)):
        ball = ((zz - 20) ** 2 + (yy - 20 - shift) ** 2 + (xx - 18) ** 2) < 100
        box = (abs(zz - 20) < 12) & (abs(yy - 20 - shift) < 6) & (abs(xx - 24) < 8) & ~ball
        labels = sitk.GetImageFromArray((ball + 2 * box).astype(np.uint16))
        image = sitk.GetImageFromArray(np.where(ball, 100.0, np.where(box, 60.0, 10.0)).astype(np.float32))
        for img in (image, labels):
            img.SetSpacing((2.0, 2.0, 2.0))
        bench.write(tmp_path, name, image, labels)
    row = bench.run_ants_affine("ball_fixed", "ball_moving", None, str(tmp_path / "work"))
    assert row["dice"] > 0.85 and row["fold_fraction"] == 0.0 and 0.8 < row["detj_min"] == row["detj_max"] < 1.2


def test_resume_with_every_row_done_writes_one_table_per_set_without_registering(bench, tmp_path):
    shared_path("synthseg_label_maps")
    shared_path("mni_icbm152_2009a")
    out = tmp_path / "whole_head.md"
    done = [{"method": "affine", "fixed": fixed, "moving": moving, "dice": dice, "fold_fraction": 0.0, "detj_min": 0.9,
             "detj_max": 0.9, "seconds": 5.0, "engine_total_s": None, "network_s": None, "error": None}
            for fixed, moving, dice in (("head01_T1", "head02_T2_k0", 0.5), ("icbm_T1", "icbm_T1_k0", 0.8))]
    bench.bench.write_pair_rows(bench.bench.pair_rows_path(str(out)), done)
    code = bench.main(["--pairs", "1", "--contrasts", "T2", "--icbm", "T1", "--methods", "affine", "--resume",
                       "--out", str(out), "--cache", str(tmp_path / "cache"), "--threads", "1"])
    text = out.read_text()
    assert code == 0 and not list((tmp_path / "cache").rglob("*.nii.gz"))
    assert "whole head T1 -> T2: 1 pair(s)" in text and "ICBM T1 -> T1: 1 pair(s)" in text
    assert "| affine | 1 | 0.500 ± 0.000 |" in text and "| affine | 1 | 0.800 ± 0.000 |" in text
