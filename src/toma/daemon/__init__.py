"""The daemon: the loop, one tick, the cache between ticks, the builder and the sender."""
