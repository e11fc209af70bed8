"""Containers: spec, OCI config, lifecycle through conmon and runc."""
