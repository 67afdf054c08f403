"""Partner-facing APIs of canonical records (the read-only FHIR R4 facade lives in `fhir_*`)."""
