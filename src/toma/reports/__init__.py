"""Read-only views of the project and its store: plan, status, log, explain."""
