"""sse-hub: a Server-Sent Events broadcast hub."""

__version__ = "0.1.0"
