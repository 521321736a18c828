"""Backends: how task and service instances run (threads in local_backend, Ray actors in ray_backend)."""

from .base import BACKENDS, Backend, ExitCallback, InstanceHandle, create_backend

__all__ = ["BACKENDS", "Backend", "ExitCallback", "InstanceHandle", "create_backend"]
