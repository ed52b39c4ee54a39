"""One module per table: the only code that reads and writes the raw documents."""
