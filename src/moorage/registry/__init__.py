"""The registry server: HTTP handlers -> storage service -> storage driver (OCI distribution)."""
