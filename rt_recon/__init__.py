"""rt_recon: real-time reconstruction of seen images from fMRI.

Volumes arrive over LSL, linear decoders turn each TR into an image latent
``z`` and a conditioning embedding ``c``, and a few-step diffusion model
renders the picture. See docs/protocol.md for the wire formats.
"""

__version__ = "0.1.0"
