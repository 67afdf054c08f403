"""Name helpers for patient matching: normalization, Jaro-Winkler similarity and a nickname table.

Pure Python, no Django: `canonical.identity` scores pairs of patients with these, and a test can
check them without a database.
"""

from __future__ import annotations

import re
import unicodedata

# Apostrophes and periods vanish ("O'Brien" = "OBrien", "J." = "J"); any other non-letter,
# non-digit run becomes one space ("Smith-Jones" = "Smith Jones").
_DROPPED = re.compile(r"[\'\u2019\u02bc.]")
_SEPARATORS = re.compile(r"[^\w]+|_+")


def normalize_name(value: str | None) -> str:
    """Casefold, strip accents and punctuation, collapse spaces: "  José  O'Brien-Núñez " -> "jose obrien nunez"."""
    if not value:
        return ""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(_SEPARATORS.sub(" ", _DROPPED.sub("", bare)).split())


def first_given_name(given_names: list[str] | None) -> str:
    """The first token of the first given name, normalized ("Mary-Jane" -> "mary")."""
    for given in given_names or ():
        tokens = normalize_name(given).split()
        if tokens:
            return tokens[0]
    return ""


def jaro_winkler(left: str, right: str, *, prefix_scale: float = 0.1) -> float:
    """Jaro-Winkler similarity in [0, 1] (1 = identical), the usual record-linkage measure for
    short strings: typos and transpositions cost little, a shared prefix (up to 4) helps."""
    if left == right:
        return 1.0 if left else 0.0
    if not left or not right:
        return 0.0
    window = max(max(len(left), len(right)) // 2 - 1, 0)
    left_matched = [False] * len(left)
    right_matched = [False] * len(right)
    matches = 0
    for i, char in enumerate(left):
        for j in range(max(0, i - window), min(len(right), i + window + 1)):
            if not right_matched[j] and right[j] == char:
                left_matched[i] = right_matched[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    left_chars = [c for c, hit in zip(left, left_matched, strict=True) if hit]
    right_chars = [c for c, hit in zip(right, right_matched, strict=True) if hit]
    transpositions = sum(a != b for a, b in zip(left_chars, right_chars, strict=True)) / 2
    jaro = (matches / len(left) + matches / len(right) + (matches - transpositions) / matches) / 3
    prefix = 0
    for a, b in zip(left[:4], right[:4], strict=False):
        if a != b:
            break
        prefix += 1
    return jaro + prefix * prefix_scale * (1 - jaro)


# Formal given name -> common short forms (all normalized). A short form may belong to several
# formal names ("pat": Patricia and Patrick); two names are nicknames of each other when they
# share a formal name. Variant spellings of one formal name share its row.
_NICKNAMES: dict[str, tuple[str, ...]] = {
    "abigail": ("abby", "abbie", "gail"),
    "albert": ("al", "bert", "bertie"),
    "alexander": ("alex", "alec", "sandy", "xander"),
    "alexandra": ("alex", "sandra", "sandy", "lexi"),
    "alfred": ("al", "alf", "fred", "freddie"),
    "andrew": ("andy", "drew"),
    "anne": ("ann", "anna", "annie", "nan", "nancy"),
    "anthony": ("tony",),
    "barbara": ("barb", "babs", "barbie"),
    "benjamin": ("ben", "benny", "benji"),
    "catherine": ("katherine", "kathryn", "katharine", "cathy", "kathy", "kate", "katie", "kay", "kitty", "cate"),
    "charles": ("charlie", "chuck", "chas", "chip"),
    "christine": ("christina", "chris", "chrissy", "tina"),
    "christopher": ("chris", "kit", "topher"),
    "cynthia": ("cindy",),
    "daniel": ("dan", "danny"),
    "david": ("dave", "davey"),
    "deborah": ("debra", "deb", "debbie"),
    "dolores": ("lola", "lolita"),
    "donald": ("don", "donnie"),
    "dorothy": ("dot", "dottie", "dolly"),
    "douglas": ("doug",),
    "edward": ("ed", "eddie", "ted", "teddy", "ned"),
    "eleanor": ("ellie", "nell", "nellie", "elle"),
    "elizabeth": ("liz", "lizzie", "beth", "betty", "betsy", "bess", "eliza", "libby", "liza"),
    "eugene": ("gene",),
    "frances": ("fran", "frannie", "francie"),
    "francis": ("frank", "frankie"),
    "francisco": ("paco", "pancho", "frank"),
    "frederick": ("fred", "freddie", "fritz"),
    "gerald": ("jerry", "gerry"),
    "gregory": ("greg",),
    "guadalupe": ("lupe", "lupita"),
    "harold": ("hal", "harry"),
    "helen": ("nell", "nellie"),
    "henry": ("hank", "harry", "hal"),
    "jacqueline": ("jackie", "jacqui"),
    "james": ("jim", "jimmy", "jamie"),
    "jeffrey": ("geoffrey", "jeff", "geoff"),
    "jennifer": ("jen", "jenny", "jenn"),
    "john": ("jack", "johnny"),
    "jonathan": ("jon", "jonny"),
    "jose": ("pepe",),
    "joseph": ("joe", "joey"),
    "josephine": ("jo", "josie"),
    "joshua": ("josh",),
    "judith": ("judy", "jude"),
    "kenneth": ("ken", "kenny"),
    "kimberly": ("kim",),
    "lawrence": ("laurence", "larry"),
    "leonard": ("len", "lenny", "leo"),
    "louis": ("lou",),
    "manuel": ("manny",),
    "margaret": ("peggy", "maggie", "meg", "marge", "margie", "greta", "madge", "daisy"),
    "mary": ("molly", "polly", "mae", "mamie"),
    "matthew": ("matt",),
    "michael": ("mike", "mikey", "mickey", "mick"),
    "nathaniel": ("nathan", "nate", "nat"),
    "nicholas": ("nick", "nicky"),
    "pamela": ("pam",),
    "patricia": ("pat", "patty", "patsy", "trish", "tricia"),
    "patrick": ("pat", "paddy"),
    "peter": ("pete",),
    "philip": ("phillip", "phil"),
    "raymond": ("ray",),
    "rebecca": ("becky", "becca"),
    "richard": ("rick", "ricky", "rich", "richie", "dick"),
    "robert": ("bob", "bobby", "rob", "robbie", "bert"),
    "ronald": ("ron", "ronnie"),
    "samuel": ("sam", "sammy"),
    "sandra": ("sandy",),
    "sarah": ("sara", "sally", "sadie"),
    "stephen": ("steven", "steve", "stevie"),
    "susan": ("sue", "susie", "suzy"),
    "theodore": ("ted", "teddy", "theo"),
    "thomas": ("tom", "tommy"),
    "timothy": ("tim", "timmy"),
    "victoria": ("vicky", "vickie", "tori"),
    "vincent": ("vince", "vinny"),
    "virginia": ("ginny", "ginger"),
    "walter": ("walt", "wally"),
    "william": ("bill", "billy", "will", "willie", "liam"),
    "zachary": ("zach", "zack"),
}

_FORMAL_OF: dict[str, frozenset[str]] = {}
for _formal, _short_forms in _NICKNAMES.items():
    for _name in (_formal, *_short_forms):
        _FORMAL_OF[_name] = _FORMAL_OF.get(_name, frozenset()) | {_formal}


def are_nicknames(left: str, right: str) -> bool:
    """True when two different normalized first names are forms of one formal name (bob ~ robert, bob ~ bobby)."""
    if not left or not right or left == right:
        return False
    return bool(_FORMAL_OF.get(left, frozenset()) & _FORMAL_OF.get(right, frozenset()))
