"""The access policy: loading, its sources, and pure decisions."""
