"""The simulated Welkin Health vendor (v8 Welkin Cloud, the v1 JWT-bearer grant as an option); see vendor.py."""

from sandbox.welkin.vendor import Welkin

__all__ = ["Welkin"]
