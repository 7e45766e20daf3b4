"""Raw-source adapters, one module a source: each reads its files (I/O, at the edge of the
product) into the canonical raw frame of `sources.raw` that ingest validates."""
