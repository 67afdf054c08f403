"""eClinicalWorks and healow, one connector per surface:

- `eclinicalworks`: the portal (password + TOTP/SMS/email MFA), polled and diffed, with bookings,
  eligibility checks and claim submission through the practice's clearinghouse (connector.py,
  client.py, mapping.py);
- `eclinicalworks_fhir`: the FHIR R4 surface per practice (SMART Backend Services, 250 requests a
  minute, Bulk $export) (fhir.py).

Importing this package registers both.
"""

import connectors.eclinicalworks.fhir  # noqa: F401  (registers "eclinicalworks_fhir")
from connectors.eclinicalworks.connector import EClinicalWorksConnector  # noqa: F401  (registers "eclinicalworks")
