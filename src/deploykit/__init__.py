"""deploykit: from a trained model to a measured deployment."""

__version__ = "0.1.0"
__all__ = ["__version__"]
