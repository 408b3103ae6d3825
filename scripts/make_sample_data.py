"""Re-create the bundled demo pair in AVSMRegistration/avsm/sample_data/ from ../shared/data.

fixed  = open_ms_lesjak patient07 T1 (brain-extracted, MNI space; CC BY, Lesjak et al. 2017)
moving = IXI002 T1 (skull-stripped with HD-BET, native oblique space; IXI, CC BY-SA 3.0)
plus their brain masks (label 1) so the demo reports a Dice. Both downsampled to 2 mm (Gaussian
anti-aliasing, linear interpolation) on their own grids (the IXI image keeps its oblique direction).
"""
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "AVSMRegistration" / "avsm" / "sample_data"
SPACING = 2.0


def downsample(image: sitk.Image, interpolator=sitk.sitkLinear) -> sitk.Image:
    size = [int(round(n * s / SPACING)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    reference = sitk.Image(size, image.GetPixelID())
    reference.SetSpacing((SPACING,) * 3)
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([(SPACING / s - 1) / 2 for s in image.GetSpacing()]))
    if interpolator == sitk.sitkLinear:
        sigmas = [0.5 * np.sqrt(max(SPACING**2 - s**2, 0)) for s in image.GetSpacing()]
        image = sitk.DiscreteGaussian(sitk.Cast(image, sitk.sitkFloat32), variance=[s * s for s in sigmas], useImageSpacing=True)
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    fixed = sitk.ReadImage(str(SHARED / "open_ms_lesjak/cross_sectional_MNI/patient07/T1_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"))
    moving = sitk.ReadImage(str(SHARED / "ixi002/hd_bet_IXI002-Guys-0828-T1.nii.gz"))
    moving_mask = sitk.ReadImage(str(SHARED / "ixi002/hd_bet_mask_IXI002-Guys-0828-T1.nii.gz"))
    fixed_small = downsample(fixed)
    moving_small = downsample(moving)
    fixed_mask = sitk.Cast(fixed_small > 0.02 * float(sitk.GetArrayViewFromImage(fixed_small).max()), sitk.sitkUInt8)
    fixed_mask = sitk.Cast(sitk.BinaryFillhole(sitk.BinaryMorphologicalClosing(fixed_mask, [2, 2, 2])), sitk.sitkUInt8)
    for name, image in (("fixed_t1_2mm.nii.gz", fixed_small), ("moving_t1_2mm.nii.gz", moving_small)):
        array = sitk.GetArrayFromImage(image)
        scaled = sitk.GetImageFromArray(np.clip(array / array.max() * 1000, 0, 1000).astype(np.int16))
        scaled.CopyInformation(image)
        sitk.WriteImage(scaled, str(OUT / name), useCompression=True)
    sitk.WriteImage(fixed_mask, str(OUT / "fixed_brainmask_2mm.nii.gz"), useCompression=True)
    sitk.WriteImage(sitk.Cast(downsample(moving_mask, sitk.sitkNearestNeighbor), sitk.sitkUInt8),
                    str(OUT / "moving_brainmask_2mm.nii.gz"), useCompression=True)


if __name__ == "__main__":
    main()
