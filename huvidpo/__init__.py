"""HuViDPO Studio: Direct Preference Optimization for text-to-video diffusion (arXiv 2502.01690)."""

__version__ = "0.1.0"
