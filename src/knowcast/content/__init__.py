"""knowcast.content."""
