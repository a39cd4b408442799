"""knowcast.profiles."""
