"""Welkin Health (v8 Welkin Cloud; the v1 JWT-bearer grant as an option): API-client tokens,
ping-and-pull webhooks (webhooks.py), reconciliation sweeps, three writes (connector.py).

Importing this package registers the "welkin" connector.
"""

from connectors.welkin.connector import WelkinConnector  # noqa: F401  (registers "welkin")
