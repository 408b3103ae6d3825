"""Registration networks: the recurrent affine network, AVSM's momentum U-net and vSVF model, VoxelMorph."""
from .affine_net import AffineNet, AffineSteps, compose_affine, correction_affine, multi_step_affine
from .models import (AVSMNetwork, DeformableOutput, NetworkConfig, RegistrationNetwork, VoxelMorphNetwork,
                     build_network, momentum_regulariser)
from .unets import MomentumUNet, VoxelMorphUNet

__all__ = ["AffineNet", "AffineSteps", "compose_affine", "correction_affine", "multi_step_affine", "AVSMNetwork",
           "DeformableOutput", "NetworkConfig", "RegistrationNetwork", "VoxelMorphNetwork", "build_network",
           "momentum_regulariser", "MomentumUNet", "VoxelMorphUNet"]
