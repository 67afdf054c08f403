"""Reading FHIR R4 servers: searches (`search.py`) and Bulk Data exports (`bulk.py`)."""
