"""Admin forms: write-only secrets and scope pickers."""

from __future__ import annotations

import json

from django import forms

from tenants.choices import ALL_SCOPES, SCOPES
from tenants.models import ApiKey, Credential
from tenants.services import InvalidScopes, normalize_scopes

_SECRET_LABELS = {
    "password": "Password",
    "totp_secret": "TOTP secret",
    "client_secret": "OAuth client secret",
    "private_key_pem": "Private key (PEM)",
    "extra": "Extra secrets (JSON object)",
}


def _secret_field(label: str, multiline: bool = False) -> forms.CharField:
    widget = (
        forms.Textarea(attrs={"rows": 3, "autocomplete": "off"})
        if multiline
        else forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
    )
    return forms.CharField(label=label, required=False, widget=widget, strip=False)


class CredentialForm(forms.ModelForm):
    """Secrets are never rendered back: an empty box keeps the stored value, 'clear' removes it."""

    password = _secret_field("Password")
    clear_password = forms.BooleanField(label="Clear password", required=False)
    totp_secret = _secret_field("TOTP secret")
    clear_totp_secret = forms.BooleanField(label="Clear TOTP secret", required=False)
    client_secret = _secret_field("OAuth client secret")
    clear_client_secret = forms.BooleanField(label="Clear OAuth client secret", required=False)
    private_key_pem = _secret_field("Private key (PEM)", multiline=True)
    clear_private_key_pem = forms.BooleanField(label="Clear private key", required=False)
    extra = _secret_field("Extra secrets (JSON object)", multiline=True)
    clear_extra = forms.BooleanField(label="Clear extra secrets", required=False)

    class Meta:
        model = Credential
        fields = ["username", "client_id"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The admin lists the secret names among the form's model fields, so Django would both
        # pre-fill them from the instance and copy the (empty) boxes back onto it. Neither may happen.
        self._stored = {name: getattr(self.instance, name) for name in _SECRET_LABELS}
        for name in _SECRET_LABELS:
            self.initial.pop(name, None)
            state = "set — leave empty to keep it" if self._stored[name] else "not set"
            self.fields[name].help_text = f"Currently {state}."
        self.changed_secrets: list[str] = []

    def clean_extra(self) -> str:
        raw = self.cleaned_data.get("extra", "")
        if raw.strip():
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise forms.ValidationError(f"Not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
            if not isinstance(value, dict):
                raise forms.ValidationError("Must be a JSON object, e.g. {\"agency_tag\": \"…\"}.")
        return raw

    def clean_totp_secret(self) -> str:
        import base64
        import binascii

        raw = self.cleaned_data.get("totp_secret", "").replace(" ", "").upper()
        if raw:
            try:
                base64.b32decode(raw + "=" * (-len(raw) % 8))
            except (binascii.Error, ValueError):
                raise forms.ValidationError("A TOTP secret is base32 (letters A–Z and digits 2–7).") from None
        return raw

    def cleaned_data_secret_changes(self) -> dict[str, str]:
        if not hasattr(self, "cleaned_data"):
            return {}
        changes = {}
        for name in _SECRET_LABELS:
            if self.cleaned_data.get(f"clear_{name}"):
                changes[name] = ""
            elif self.cleaned_data.get(name):
                changes[name] = self.cleaned_data[name]
        return changes

    def save(self, commit: bool = True):
        credential = super().save(commit=False)
        for name, value in self._stored.items():
            setattr(credential, name, value)
        changes = self.cleaned_data_secret_changes()
        self.changed_secrets = sorted(name for name, value in changes.items() if getattr(credential, name) != value)
        for name, value in changes.items():
            setattr(credential, name, value)
        if commit:
            credential.save()
        return credential


class ApiKeyCreateForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(ALL_SCOPES, "* (every scope)")] + [(s, s) for s in SCOPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="What this key may do. Give the fewest that the partner needs.",
    )

    class Meta:
        model = ApiKey
        fields = ["partner_app", "name", "scopes", "expires_at"]

    def clean_scopes(self) -> list[str]:
        try:
            return normalize_scopes(self.cleaned_data["scopes"])
        except InvalidScopes as exc:
            raise forms.ValidationError(str(exc)) from None
