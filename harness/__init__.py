"""The coordinator side: CLI, load profiles, collector, statistics and reports."""

__version__ = "0.1.0"
