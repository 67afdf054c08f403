"""WellSky: the portal surface (password + MFA, rotating session cookie), read incrementally and
written with idempotency keys. Importing this package registers the connector."""

from connectors.wellsky.connector import WellSkyConnector  # noqa: F401  (registers "wellsky")
