"""Backends: how task and service instances run (threads here, Ray actors in ray_backend)."""

from .local_backend import LocalBackend

__all__ = ["LocalBackend"]
