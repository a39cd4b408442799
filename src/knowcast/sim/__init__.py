"""knowcast.sim."""
