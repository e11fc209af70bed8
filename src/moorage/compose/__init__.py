"""Compose: compose files (and the 2014 fig format) -> a typed project -> a convergence plan."""
