"""WellSky, one connector per product surface (WellSky tenants differ by product):

- `wellsky`: the portal (password + TOTP/SMS/email MFA, rotating session cookie), read
  incrementally and written with idempotency keys (connector.py, client.py, mapping.py);
- `wellsky_pcc`: Personal Care Connect (OAuth2; caregivers, shifts, care logs; thin webhooks) (pcc*.py, webhooks.py);
- `wellsky_connect`: the FHIR R4 Connect surface (OAuth2) (connect.py).

Importing this package registers all three.
"""

import connectors.wellsky.connect  # noqa: F401  (registers "wellsky_connect")
import connectors.wellsky.pcc  # noqa: F401  (registers "wellsky_pcc")
from connectors.wellsky.connector import WellSkyConnector  # noqa: F401  (registers "wellsky")
