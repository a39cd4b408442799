"""knowcast.live."""
