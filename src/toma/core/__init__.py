"""The pure core: given values and the moment, decide. No store, files, network or clock."""
