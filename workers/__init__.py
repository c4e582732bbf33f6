"""Worker processes: each owns one engine. Imports only ``protocol``."""
