"""knowcast: an open-source growth engine for knowledge-commerce."""

__version__ = "0.1.0"
