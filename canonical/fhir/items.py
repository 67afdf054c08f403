"""Items of the canonical JSON lists (note amendments, care-plan goals, activities and outcomes,
assessment answers) as FHIR elements, both ways.

Each pair is exact for items of the documented shape; `common.encode_items` checks every item by
decoding what it encoded and carries any item that does not come back the same as JSON.
"""

from __future__ import annotations

from typing import Any

from canonical.fhir import codes
from canonical.fhir import common as c

# Note amendments: a complex extension, one part per key.
_AMENDMENT_URLS = {"reason_code": "reasonCode", "text": "text", "amended_by": "amendedBy", "amended_at": "amendedAt", "resigned_at": "resignedAt"}
_AMENDMENT_KEYS = {url: key for key, url in _AMENDMENT_URLS.items()}


def amendment_encode(item: Any) -> dict:
    parts = []
    if isinstance(item, dict):
        for key, url in _AMENDMENT_URLS.items():
            value = item.get(key)
            if key == "reason_code" and c.is_code(value):
                parts.append({"url": url, "valueCode": value})
            elif key in ("amended_at", "resigned_at") and c.is_datetime(value):
                parts.append({"url": url, "valueDateTime": value})
            elif key in ("text", "amended_by") and c.is_string(value):
                parts.append({"url": url, "valueString": value})
    return {"url": c.NOTE_AMENDMENT, "extension": parts}


def amendment_decode(element: dict) -> dict:
    item: dict[str, Any] = {}
    for part in element.get("extension") or []:
        key = _AMENDMENT_KEYS.get(part.get("url"))
        if key:
            item[key] = c.read_typed_value(part)
    return item


# Care-plan goals: contained Goal resources. A status Goal.lifecycleStatus cannot hold (achieved,
# met, …) goes to achievementStatus as text, with the lifecycle "active".
def goal_encode(item: Any, patient_ref: dict | None, index: int) -> dict:
    item = item if isinstance(item, dict) else {}
    status = item.get("status")
    goal: dict[str, Any] = {"resourceType": "Goal", "id": f"goal-{index}"}
    if status in codes.GOAL_LIFECYCLE:
        goal["lifecycleStatus"] = status
    else:
        goal["lifecycleStatus"] = "active"
        if c.is_string(status):
            goal["achievementStatus"] = {"text": status}
    description = item.get("description")
    goal["description"] = {"text": description if c.is_string(description) else "(no description)"}
    goal["subject"] = patient_ref
    if c.is_string(item.get("target")):
        goal["target"] = [{"detailString": item["target"]}]
    return {key: value for key, value in goal.items() if value is not None}


def goal_decode(goal: dict) -> dict:
    item: dict[str, Any] = {}
    description = goal.get("description") or {}
    text = description.get("text") or next((coding.get("display") for coding in description.get("coding") or [] if coding.get("display")), None)
    if c.is_string(text):
        item["description"] = text
    targets = goal.get("target") or []
    if targets and "detailString" in targets[0]:
        item["target"] = targets[0]["detailString"]
    achievement = goal.get("achievementStatus") or {}
    codings = achievement.get("coding") or [{}]
    status = achievement.get("text") or codings[0].get("code") or goal.get("lifecycleStatus")
    if status:
        item["status"] = status
    return item


# Care-plan activities: CarePlan.activity.detail.
def activity_encode(item: Any) -> dict:
    item = item if isinstance(item, dict) else {}
    status = item.get("status")
    detail: dict[str, Any] = {"status": status if status in codes.CARE_PLAN_ACTIVITY_STATUSES else "unknown"}
    if c.is_string(item.get("description")):
        detail["description"] = item["description"]
    if c.is_string(item.get("frequency")):
        detail["scheduledString"] = item["frequency"]
    return {"detail": detail}


def activity_decode(element: dict) -> dict:
    detail = element.get("detail")
    item: dict[str, Any] = {}
    if detail is None:  # a sender's activity that points at a request resource instead
        reference = element.get("reference") or {}
        described = reference.get("display") or reference.get("reference")
        return {"description": described} if described else item
    if "description" in detail:
        item["description"] = detail["description"]
    if "status" in detail:
        item["status"] = detail["status"]
    if "scheduledString" in detail:
        item["frequency"] = detail["scheduledString"]
    return item


# Care-plan outcomes: CarePlan.note annotations (text and time).
def outcome_encode(item: Any) -> dict:
    item = item if isinstance(item, dict) else {}
    note: dict[str, Any] = {"text": item["description"] if c.is_string(item.get("description")) else "(no description)"}
    if c.is_datetime(item.get("date")):
        note["time"] = item["date"]
    return note


def outcome_decode(note: dict) -> dict:
    item: dict[str, Any] = {"description": note.get("text")}
    if "time" in note:
        item["date"] = note["time"]
    return item


# Assessment answers: QuestionnaireResponse.item with one answer.
def answer_encode(item: Any, link_id: str) -> dict:
    item = item if isinstance(item, dict) else {}
    element: dict[str, Any] = {"linkId": link_id}
    if c.is_string(item.get("question")):
        element["text"] = item["question"]
    if "answer" in item:
        value = c.typed_value(item["answer"])
        if value is not None:
            element["answer"] = [value]
    return element


def answer_decode(element: dict) -> dict:
    """One item; a sender's item without text is asked by its linkId."""
    item: dict[str, Any] = {}
    question = element.get("text") or element.get("linkId")
    if question is not None:
        item["question"] = question
    answers = [c.read_typed_value(answer) for answer in element.get("answer") or []]
    if len(answers) == 1:
        item["answer"] = answers[0]
    elif answers:
        item["answer"] = answers
    return item
