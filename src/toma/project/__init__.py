"""The owner's project folder: its files read into values, its checks, and ``toma init``."""
