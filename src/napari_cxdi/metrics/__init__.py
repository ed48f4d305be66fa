"""Quality metrics: R_f, consistency PRTF, Fourier fit ratio and FRC resolution, phase SSIM, entropy, velocity."""

from .image import image_entropy, phase_ssim, remove_phase_offset, structured_frames
from .resolution import ONE_OVER_E, ResolutionCurve, fourier_fit_ratio, frc, half_bit_threshold, prtf, sigma_threshold
from .rfactor import heldout_excess, poisson_deviance, r_factor, r_factor_per_frame
from .velocity import estimate_shifts, estimate_velocity, register_shift

__all__ = [
    "ONE_OVER_E", "ResolutionCurve", "estimate_shifts", "estimate_velocity", "fourier_fit_ratio", "frc",
    "half_bit_threshold", "heldout_excess", "image_entropy", "poisson_deviance", "phase_ssim", "prtf", "r_factor", "r_factor_per_frame", "register_shift",
    "remove_phase_offset", "sigma_threshold", "structured_frames",
]
