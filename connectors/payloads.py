"""Validation at the edge: a vendor payload parsed into its typed model, or InvalidPayload with the path."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from connectors.errors import InvalidPayload

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: Any) -> M:
    """`model.model_validate(raw)`; a payload that breaks the vendor's contract raises InvalidPayload
    naming the first bad field's path (`address.zip: Input should be a valid string`)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise InvalidPayload(f"{path}: {first['msg']}", path=path) from None


class RawModel(BaseModel):
    """A vendor record's typed shape: unknown fields ignored (vendors add fields), never mutated."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class RawAddress(RawModel):
    """The postal address most vendor JSON carries."""

    line1: str = ""
    line2: str = ""
    city: str = ""
    state: str = ""
    zip: str = ""

    def canonical(self) -> dict[str, str]:
        """The canonical address fields (a US address when there is a street)."""
        return {"address_line1": self.line1, "address_line2": self.line2, "city": self.city, "state": self.state,
                "postal_code": self.zip, "country": "US" if self.line1 else ""}


class RawIdentifier(RawModel):
    type: str
    value: str


def one_of(table: dict[str, str], value: str, field: str) -> str:
    """`table[value]`, or InvalidPayload naming the field and what it may be."""
    try:
        return table[value]
    except KeyError:
        raise InvalidPayload(f"{field}: {value!r} is not one of {', '.join(table)}", path=field) from None
