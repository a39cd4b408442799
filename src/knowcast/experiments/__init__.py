"""knowcast.experiments."""
