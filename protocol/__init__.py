"""Wire protocol shared by coordinator, workers and collector. Imports nothing of ours."""
