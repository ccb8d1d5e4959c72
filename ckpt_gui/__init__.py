"""ckpt-gui: a desktop checkpoint browser for PyTorch."""

__version__ = "0.1.0"
