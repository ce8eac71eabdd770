"""Transforms of monai_unets."""

from __future__ import annotations

__all__: list[str] = []
