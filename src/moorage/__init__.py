"""moorage: a container platform for micro-services (build, ship, run, compose, operate)."""

__version__ = "0.1.0"
