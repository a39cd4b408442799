"""knowcast.recommend."""
