"""FHIR R4 both ways, over fhir.resources' R4B models.

- `export.to_fhir(record)`: any canonical record (or encounter child row) as a FHIR resource dict
  that validates against its R4B model; `export.FHIR_SELECT_RELATED` / `FHIR_PREFETCH_RELATED`
  say what to load with it.
- `ingest.ingest_fhir(payload, tenant=…, connection=…)`: a resource or Bundle into canonical
  records, keeping every entry as a SourceRecord and rejecting bad resources with their element path.

`common` holds the URLs and helpers both directions share, `codes` the value sets and code checks,
`validation` the translation of model errors into element paths, `normalize` the FHIR → canonical
mapping of each resource type.
"""
