"""What a user id (a token's ``sub``) may look like.

A user id is shown to other users (``from`` in every message, presence lists),
so it must not be able to pass for someone else's:

* **at most 128 characters**: an unbounded id is a memory and log amplifier;
* **NFKC-normalised** (Unicode TR 15): fullwidth ``ａｌｉｃｅ`` and ``alice`` are one
  name to a reader. A token whose ``sub`` is *not* already in NFKC form is refused
  rather than folded, since folding would merge two accounts the identity provider
  keeps apart. The development ``/token`` route, which is its own issuer, folds the
  name it is asked for instead;
* **no control, format, surrogate, private-use, unassigned or line/paragraph
  separator characters** (general categories ``Cc Cf Cs Co Cn Zl Zp``): newlines forge
  log lines, NUL truncates C strings, and the bidi controls (U+202A-U+202E,
  U+2066-U+2069, U+200E/F, U+061C, all ``Cf``) reorder how a name is displayed
  (CVE-2021-42574, "Trojan Source"); zero-width characters (``Cf``) make invisible
  twins;
* no leading or trailing white space.

What stays allowed, and is the application's to police: letters of every script
(a Japanese or Greek name is a feature), so cross-script look-alikes such as a
Cyrillic ``а`` in ``аlice`` (Unicode TR 39 "confusables") pass these rules.
"""

from __future__ import annotations

import unicodedata

from ..core.text import first_invisible
from ..exceptions import AuthError

__all__ = ["MAX_USER_ID", "check_user_id", "normalise_user_id"]

#: longest user id, in characters (after normalisation)
MAX_USER_ID = 128

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _problem(user: str) -> str | None:
    """Why ``user`` is not an acceptable (already normalised) id, or None."""
    if not user:
        return "is empty"
    if len(user) > MAX_USER_ID:
        return f"is longer than {MAX_USER_ID} characters"
    if user != user.strip():
        return "has leading or trailing white space"
    for ch in user:
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES:
            return (f"contains U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}), "
                    f"a control, format or invisible character")
    hidden = first_invisible(user)
    if hidden is not None:  # letters and marks that render as nothing (core.text)
        return (f"contains U+{ord(hidden):04X} ({unicodedata.name(hidden, 'unnamed')}), "
                f"a character that renders as nothing")
    return None


def check_user_id(user: object) -> str:
    """``user`` if it is an acceptable user id, else :class:`AuthError` saying why.

    Used on a token's ``sub``: a ``sub`` not in NFKC form is refused, not folded.
    """
    if not isinstance(user, str):
        raise AuthError("token 'sub' must be a string")
    problem = _problem(user)
    if problem is None and unicodedata.normalize("NFKC", user) != user:
        problem = (f"is not NFKC-normalised (it reads as "
                   f"{unicodedata.normalize('NFKC', user)[:MAX_USER_ID]!r})")
    if problem is not None:
        raise AuthError(f"token 'sub' {problem}")
    return user


def normalise_user_id(user: str) -> str:
    """The NFKC form of a requested name, checked; :class:`AuthError` if unusable.

    For issuers (the development ``/token`` route): ``ａｌｉｃｅ`` becomes ``alice``.
    """
    folded = unicodedata.normalize("NFKC", user)
    problem = _problem(folded)
    if problem is not None:
        raise AuthError(f"user id {problem}")
    return folded
