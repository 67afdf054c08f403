"""Reading FHIR R4 servers: type searches (`search.py`), Bulk Data exports (`bulk.py`), and the
`fhir` connector for any FHIR R4 server (`connector.py`), which the vendors' FHIR surfaces build on."""
