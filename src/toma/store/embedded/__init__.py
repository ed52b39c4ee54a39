"""The embedded store: an in-memory snapshot of every table and a journal on disk."""
