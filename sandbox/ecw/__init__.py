"""A simulated eClinicalWorks (with healow and the RCM module): one multi-site ambulatory practice.

- `data.py`: the practice's records, generated lazily and deterministically from (seed, scale);
  plain dicts whose fields are documented there, for any surface to reuse (the FHIR R4 one too).
- `scheduling.py`: provider templates, free slots and the booking rules.
- `billing.py`: eligibility (270 out, 271 back) and claim batches through the clearinghouse.
- `vendor.py`: the `EClinicalWorks` vendor (key "eclinicalworks", path prefix /ecw/): accounts with
  MFA and module entitlements, sessions, mutations, live counts.
- `portal.py`: the HTTP surface the product document lists (`/authenticate`, `/patients`, …,
  `/create_appointment`, `/eligibility`, `/submit_claim`, and healow under `/healow/`).
- `errors.py`: the numeric error codes every refusal carries.
"""
