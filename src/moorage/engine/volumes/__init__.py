"""Volumes: the local driver, bind and tmpfs mounts."""
