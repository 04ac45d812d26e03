"""Redis client for greenrt (placeholder; filled in below)."""
