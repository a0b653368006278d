"""The task library: ready-made tasks for common work (SQLite, HTTP)."""
