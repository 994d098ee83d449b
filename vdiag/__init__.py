"""vdiag: self-supervised video representation learning, and diagnosis of appearance vs motion."""

__version__ = "0.1.0"
