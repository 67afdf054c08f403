"""eClinicalWorks and healow.

- `eclinicalworks`: the portal (password + TOTP/SMS/email MFA), polled and diffed, with bookings,
  eligibility checks and claim submission through the practice's clearinghouse (connector.py,
  client.py, mapping.py).

Importing this package registers it.
"""

from connectors.eclinicalworks.connector import EClinicalWorksConnector  # noqa: F401  (registers "eclinicalworks")
