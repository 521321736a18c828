"""Seeing a running job: rates and shares from counters, Prometheus text, topology pictures, the live view.

The modules load only what they use: `rates` and `prometheus` are plain
Python (the runtime uses them); `live_view` needs rich and is loaded by the
command line only.
"""
