"""Use cases that tie the store and the pure core together (ingest, demo, datasets, training, ...)."""
