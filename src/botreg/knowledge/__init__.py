"""Knowledge: chunking registry files and ingesting them into the store."""
