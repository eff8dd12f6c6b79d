"""Stateless face embedding and comparison service."""

__version__ = "0.1.0"
