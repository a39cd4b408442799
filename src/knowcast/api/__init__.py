"""knowcast.api."""
