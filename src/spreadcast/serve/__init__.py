"""Serving: the competition's `predict()` entry point, local replay and the shared inference path."""
from spreadcast.serve.server import predict

__all__ = ["predict"]
