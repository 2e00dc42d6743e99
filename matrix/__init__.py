"""bnb-matrix: measure 4-bit loading with bitsandbytes across torch/bitsandbytes/transformers, publish the matrix."""

__version__ = "0.1.0"
