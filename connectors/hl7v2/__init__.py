"""HL7 v2 feeds: the MLLP listener, file ingest, and the mapping of ADT/SIU/ORU/MDM messages into
canonical records. Wire-format work lives in `formats.hl7v2`."""
