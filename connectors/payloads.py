"""Validation at the edge: a vendor payload parsed into its typed model, or InvalidPayload with the path."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

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
