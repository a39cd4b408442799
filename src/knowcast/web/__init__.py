"""knowcast.web."""
