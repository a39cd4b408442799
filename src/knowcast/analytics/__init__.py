"""knowcast.analytics."""
