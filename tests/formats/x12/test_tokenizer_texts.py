"""segment_texts and the IEA search, against the plain definitions they replace for speed."""

from __future__ import annotations

import random
import re

import pytest

from formats.x12.tokenizer import Delimiters, _interchange_end, segment_texts

DELIMITERS = [Delimiters(), Delimiters(element="|", component=">", repetition="!", segment="\n"), Delimiters(segment="\t")]


def stripped_segments(text: str, delimiters: Delimiters) -> list[str]:
    """The definition: split on the terminator, drop blanks before and line breaks after each
    segment (none that is a delimiter), skip empty segments."""
    used = (delimiters.element, delimiters.component, delimiters.repetition)
    leading = "".join(c for c in " \t\r\n" if c not in used)
    trailing = "".join(c for c in "\r\n" if c not in used)
    return [s for raw in text.split(delimiters.segment) if (s := raw.lstrip(leading).rstrip(trailing))]


def random_text(rng: random.Random, delimiters: Delimiters) -> str:
    pieces = ["ISA", "CLP", "A B", "1.5", delimiters.element, delimiters.component, delimiters.segment, delimiters.segment,
              " ", "\t", "\r", "\n", "\r\n", "IEA", ""]
    return "".join(rng.choice(pieces) for _ in range(rng.randrange(12)))


@pytest.mark.parametrize("delimiters", DELIMITERS, ids=repr)
def test_segment_texts_is_the_split_with_blanks_stripped(delimiters):
    rng = random.Random(11)
    for _ in range(20000):
        text = random_text(rng, delimiters)
        assert segment_texts(text, delimiters) == stripped_segments(text, delimiters), repr(text)


@pytest.mark.parametrize("delimiters", DELIMITERS, ids=repr)
def test_segment_texts_not_exact_differs_only_by_blanks_and_empty_segments(delimiters):
    """What exact=False leaves in, a reader sees as a segment id it does not know ("", " CLP")."""
    rng = random.Random(12)
    for _ in range(20000):
        text = random_text(rng, delimiters)
        loose = segment_texts(text, delimiters, exact=False)
        if loose != stripped_segments(text, delimiters):
            assert any(not t or t[0] in " \t" for t in loose), repr(text)


def test_the_iea_search_finds_what_a_regular_expression_finds():
    rng = random.Random(13)
    isa = "ISA*00*          *00*          *ZZ*ACMEHEALTH     *ZZ*SWITCHBOARD    *250314*1200*^*00501*000000501*0*P*:~"
    for delimiters in DELIMITERS:
        t, e = delimiters.segment, delimiters.element
        pattern = re.compile(re.escape(t) + r"[ \t\r\n]*IEA" + re.escape(e))
        pieces = [t, e, "IEA", "XIEA", " ", "\n", "\r\n", "GS", "1", "IE"]
        for _ in range(20000):
            text = isa[:-1] + t + "".join(rng.choice(pieces) for _ in range(rng.randrange(10)))
            found = pattern.search(text, len(isa) - 1)
            end = text.find(t, found.end()) if found else -1
            expected = len(text) if found is None or end == -1 else end + 1
            assert _interchange_end(text, 0, delimiters) == expected, repr(text)
