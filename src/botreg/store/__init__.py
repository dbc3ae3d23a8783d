"""The knowledge store: Chroma (embedded or a server) and embedding providers."""
