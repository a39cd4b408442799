"""knowcast.store."""
