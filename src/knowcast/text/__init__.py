"""knowcast.text."""
