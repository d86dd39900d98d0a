"""dlrun: a configurable command-line experiment runner for deep learning in PyTorch."""

__version__ = "0.1.0"
