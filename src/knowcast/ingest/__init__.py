"""knowcast.ingest."""
