"""The synthetic participants: which one a session simulates, and the realistic one's parameters.

``easy`` is the participant rt_recon started with (:class:`~rt_recon.simulators.brain.
SyntheticBrain`): the simulator and the decoder share the canonical HRF, early visual
voxels pool raw pixel values, every ROI voxel is informative with independent noise,
the decoder gets the oracle ROI masks and the test run comes from the training session.

``realistic`` (:class:`~rt_recon.simulators.realistic_brain.RealisticBrain`) removes
each of those shortcuts. Every parameter below names its source where a published
figure exists and says *chosen* where none does; docs/simulation.md gives the same
table with the measured reliability of both participants.

References (only for what they are cited for; no number below is read off a
figure unless the docstring says so):

* Kay, Winawer, Mezer & Wandell (2013), Compressive spatial summation in human
  visual cortex, J Neurophysiol 110:481-494 -- the CSS model: a pRF's response
  is its summed input raised to an exponent ``n < 1``, with smaller exponents
  in higher areas.
* Kay, Winawer, Rokem, Mezer & Wandell (2013), A two-stage cascade model of
  BOLD responses in human visual cortex, PLoS Comput Biol 9:e1003079 -- early
  visual BOLD driven by local contrast energy (band-pass filter outputs,
  squared), compressed.
* Handwerker, Ollinger & D'Esposito (2004), Variation of BOLD hemodynamic
  responses across subjects and brain regions and their effects on
  statistical analyses, NeuroImage 21:1639-1651 -- the HRF's timing differs
  across subjects and regions, by about a second or two in time to peak.
* Breedlove, St-Yves, Olman & Naselaris (2020), Generative feedback explains
  distinct brain activity codes for seen and mental images, Current Biology
  30(12):2211-2224 -- encoding models fitted to mental imagery in early visual
  areas predict less of the activity than vision's, with larger receptive
  fields and a lower preferred spatial frequency; the difference between
  imagery and vision shrinks up the visual hierarchy.
* Naselaris, Olman, Stansbury, Ugurbil & Gallant (2015), A voxel-wise encoding
  model for early visual areas decodes mental images of remembered scenes,
  NeuroImage 105:215-228 -- imagined pictures can be identified from early
  visual activity with encoding models fitted on vision, above chance but
  less accurately than seen ones.
* Dijkstra, Bosch & van Gerven (2019), Shared neural mechanisms of visual
  perception and imagery, Trends Cogn Sci 23(5):423-434 -- the overlap between
  imagery and perception is larger in higher visual areas than in early ones.
* Bianciardi et al. (2009), Sources of functional magnetic resonance imaging
  signal fluctuations in the human brain at rest: a 7 T study, Magn Reson
  Imaging 27:1019-1029, and Liu (2016), Noise contributions to the fMRI signal:
  an overview, NeuroImage 143:141-151 -- physiological (cardiac, respiratory,
  low-frequency) and global fluctuations are shared across voxels and are a
  large part of BOLD noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rt_recon.errors import ConfigError

Participant = Literal["easy", "realistic"]
PARTICIPANTS: tuple[str, ...] = ("easy", "realistic")


@dataclass(frozen=True)
class ContrastResponse:
    """Early visual cortex: compressive summation of local contrast energy.

    A voxel's response is ``(pRF . E) ** n + luminance_weight * (pRF . L)``:
    ``E`` the local contrast energy of the picture (squared band-pass
    responses at ``scales_px``, luminance plus ``colour_weight`` times the two
    colour-opponent channels), ``L`` its luminance against the grey blank,
    each term scaled to unit spread over the world first.

    * ``exponent``: the CSS exponent, drawn per voxel uniformly in this range.
      Kay et al. (2013, J Neurophysiol) fit exponents well below 1 in V1-V3;
      0.2-0.5 is *chosen* to bracket what we recall of their early-visual fits
      ("about"), not a value read off their figure.
    * ``luminance_weight``: *chosen* small (0.1 of the contrast term's spread):
      a uniform field drives early visual cortex only weakly, the reason the
      cascade model (Kay et al. 2013, PLoS Comput Biol) starts from contrast.
    * ``colour_weight``: *chosen*; chromatic contrast drives V1 less than
      luminance contrast at these sizes.
    * ``scales_px``: band-pass (difference of Gaussians) scales in pixels of a
      64-pixel picture; *chosen* to see edges and the 8-pixel textures.
    """

    exponent: tuple[float, float] = (0.2, 0.5)
    luminance_weight: float = 0.1
    colour_weight: float = 0.5
    scales_px: tuple[float, ...] = (1.0, 2.0)


@dataclass(frozen=True)
class HrfVariation:
    """Voxel-wise HRF timing: the canonical HRF stretched in time per voxel.

    A voxel's HRF is ``h(t / s) / s`` with ``h`` the canonical double gamma
    (impulse peak at 5 s), so its peak moves by ``5 (s - 1)`` s. The shift is
    ``mean_shift_s`` plus a spatially smooth field (``spatial_sigma_voxels``)
    of standard deviation ``sd_shift_s``, clipped to ``+-max_shift_s``.
    Handwerker et al. (2004) report time-to-peak differences of about 1-2 s
    across subjects and regions; ``max_shift_s`` = 1.5 s follows that, the
    other numbers are *chosen*. The decoder keeps the canonical HRF, so it
    never gets the generator's.
    """

    mean_shift_s: float = 0.3
    sd_shift_s: float = 0.6
    max_shift_s: float = 1.5
    spatial_sigma_voxels: float = 1.5
    bin_s: float = 0.1  # peak shifts are quantised to this for the convolution


@dataclass(frozen=True)
class Gains:
    """How strongly each voxel, and each trial, responds.

    * ``voxel_sigma``: voxel gains are lognormal with median 1 and this sigma
      of the log (*chosen*: about a 1.6x spread between a voxel and the next
      standard deviation up).
    * ``non_responsive_fraction``: ROI voxels with no stimulus response at all
      (white matter, large vessels, voxels outside the stimulated field)
      -- *chosen*.
    * ``trial_cv``: trial-to-trial gain variability, the coefficient of
      variation of a response's amplitude across presentations of the same
      picture -- *chosen* (30%, the value of the review that motivated this
      participant). ``trial_shared`` of its variance is common to all voxels
      of the ROI on that trial (arousal, attention), the rest is per voxel.
    """

    voxel_sigma: float = 0.5
    non_responsive_fraction: float = 0.2
    trial_cv: float = 0.3
    trial_shared: float = 0.5


@dataclass(frozen=True)
class SharedNoise:
    """Low-rank noise shared across voxels, on top of AR(1) and thermal noise.

    ``fraction`` of each brain voxel's noise variance (on average) is shared:
    a global signal (positive loading everywhere, ``global_share`` of the
    shared variance) and ``n_slow`` slow physiological-like components
    (band-limited below ``slow_cutoff_hz``, spatially smooth signed
    loadings). Bianciardi et al. (2009) and Liu (2016) show such fluctuations
    to be a large part of BOLD noise; the fractions here are *chosen*.
    """

    fraction: float = 0.4
    global_share: float = 0.5
    n_slow: int = 3
    slow_cutoff_hz: float = 0.1
    loading_sigma_voxels: float = 3.0


@dataclass(frozen=True)
class SecondSession:
    """The day the validation and test runs are acquired: the head is repositioned.

    A rigid head-position offset of ``offset_mm`` (translation length) and
    ``offset_deg`` (rotation angle) in a direction drawn from the seed,
    applied to every volume of the session; a coil-sensitivity (bias field)
    change of ``bias_change`` (relative std, smooth over the brain); the
    noise ``noise_scale`` times session 1's; its own noise, drift and motion
    draws. All *chosen* ("a few mm and degrees").
    """

    offset_mm: float = 3.0
    offset_deg: float = 2.0
    bias_change: float = 0.02
    noise_scale: float = 1.1


@dataclass(frozen=True)
class AtlasMasks:
    """The decoder's ROI masks: the oracle as an atlas registered with errors would give it.

    The oracle ROI is smoothed (``smooth_voxels``), moved by a registration
    error of ``shift_voxels`` in a random direction, perturbed by a smooth
    random field of amplitude ``boundary_noise`` (so the boundary moves by
    about a voxel, unevenly) and thresholded at one half inside the brain.
    A one-voxel (3 mm) registration error and a boundary that moves by about
    a voxel are *chosen*; on the default grid they leave on average about 23%
    of a mask's voxels outside the true ROI and miss about 25% of the ROI, varying
    with the draw (seed 0: 13% and 31% outside for EV and HV; docs/simulation.md).
    """

    smooth_voxels: float = 0.8
    shift_voxels: float = 1.0
    boundary_noise: float = 0.25
    noise_sigma_voxels: float = 1.0


@dataclass(frozen=True)
class Imagery:
    """What changes when the participant imagines a cued picture instead of seeing it.

    Early visual cortex (EV): the picture is low-passed (a Gaussian blur of
    ``lowpass_sigma_px`` pixels of a 64-pixel picture) before its contrast
    energy is taken, the pRFs pool over ``prf_scale`` times their size, and
    the response, normalised like vision's to unit spread over the world, is
    scaled by ``ev_gain``: a voxel's imagery responses spread ``ev_gain`` times
    as much as its vision responses. Higher visual cortex (HV): the vision
    response to the same picture times ``hv_gain``. Trial gains, HRFs and
    noise are vision's (the noise level is that of the same run seen, so a
    weaker response stands against the same noise).

    Directions from Breedlove et al. (2020): in early visual areas imagery has
    lower signal, larger receptive fields and a lower preferred spatial
    frequency than vision, and the gap narrows in higher areas (also Dijkstra
    et al. 2019: more overlap in higher areas); Naselaris et al. (2015):
    imagined pictures decodable from early visual areas with vision-fitted
    encoding models, above chance but less well. Every number is *chosen*
    (none is read off those papers): ``ev_gain`` 0.3, ``hv_gain`` 0.8,
    ``prf_scale`` 2.0, ``lowpass_sigma_px`` 3.0.
    """

    ev_gain: float = 0.3
    hv_gain: float = 0.8
    prf_scale: float = 2.0
    lowpass_sigma_px: float = 3.0

    def __post_init__(self) -> None:
        checks = {
            "ev_gain": self.ev_gain >= 0,
            "hv_gain": self.hv_gain >= 0,
            "prf_scale": self.prf_scale > 0,
            "lowpass_sigma_px": self.lowpass_sigma_px >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"imagery parameters {bad} out of range: gains >= 0, prf_scale > 0, "
                f"lowpass_sigma_px >= 0; found {self}"
            )


@dataclass(frozen=True)
class RealisticParticipant:
    """Every parameter of the realistic participant (defaults: the documented preset)."""

    contrast: ContrastResponse = field(default_factory=ContrastResponse)
    hrf: HrfVariation = field(default_factory=HrfVariation)
    gains: Gains = field(default_factory=Gains)
    shared_noise: SharedNoise = field(default_factory=SharedNoise)
    second_session: SecondSession = field(default_factory=SecondSession)
    atlas: AtlasMasks = field(default_factory=AtlasMasks)
    imagery: Imagery = field(default_factory=Imagery)
