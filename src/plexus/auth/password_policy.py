"""Password policy (R3; ASVS V6.2.1, V6.2.4, V6.2.5, V6.2.9, V6.2.11, V6.2.12).

A new password is 12 to 1024 characters long (characters, not bytes), made of any
characters, with no composition rules. It is refused, with every reason that applies, when:

- it is in the bundled list of common passwords: the 30,000 most common passwords that the
  ``zxcvbn`` package ships (``zxcvbn.frequency_lists.FREQUENCY_LISTS["passwords"]``, MIT
  licence, installed from PyPI; Dropbox built it from leaked password corpora), compared
  case-insensitively. Only 229 of them are 12 characters or longer, so most of the list's
  work is done by zxcvbn itself, which matches every part of a password against it;
- it contains, case-insensitively, the user's e-mail address, its local part (when at
  least 3 characters), the display name (when at least 3 characters) or "plexus";
- zxcvbn scores it below 3 ("safely unguessable" starts there) given those same words;
- ``PLEXUS_HIBP_ENABLED`` is on and Have I Been Pwned has seen it in a breach (``hibp.py``);
  when the service cannot be asked, ``PLEXUS_HIBP_UNREACHABLE`` decides.

Reasons never quote the password, and nothing here logs it.
"""

from __future__ import annotations

import threading
import unicodedata
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from zxcvbn import zxcvbn  # type: ignore[import-untyped]  # the package ships no type hints
from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-untyped]

from plexus.auth import hibp
from plexus.errors import ValidationFailed
from plexus.kit.logging import get_logger

if TYPE_CHECKING:
    from plexus.config import Settings

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 1024
MIN_SCORE: Final = 3
#: Context words shorter than this (a local part "jo", a display name "Al") would refuse
#: too many good passwords, so only the whole e-mail address is checked for them.
MIN_CONTEXT_WORD: Final = 3
APP_NAME: Final = "plexus"
#: zxcvbn's cost grows with the square of the length and much faster with characters it
#: reads as l33t substitutions (2 s for 72 of them, 17 s for 200 random characters), and the
#: package refuses more than 72 by default for that reason. Only this prefix is scored: a
#: longer password is at least as strong as its first 72 characters.
SCORED_PREFIX: Final = 72

FIELD: Final = "password"
DETAIL: Final = "The password does not meet the password policy."

UNCHECKED: Final = (
    "Could not be checked against passwords exposed in data breaches right now; "
    "please try again later."
)
BREACHED: Final = "Has appeared in a data breach (Have I Been Pwned); choose another password."

log = get_logger("plexus.auth")

# zxcvbn() stores the user inputs of each call in a module-level dictionary before
# matching, so two threads scoring at once could score with each other's words.
_zxcvbn_lock = threading.Lock()


def check_password(
    password: str, *, email: str, display_name: str, settings: Settings, field: str = FIELD
) -> None:
    """Refuse ``password`` for this user with ValidationFailed listing every reason.

    The errors are ``{"field": field, "message": reason}`` entries in the problem's
    ``errors`` member, shaped like the request validation errors; ``field`` names the
    request's member that carried the password (``new_password`` on a change, say).
    """
    reasons = password_problems(password, email=email, display_name=display_name)
    if not reasons and settings.hibp_enabled:
        reasons = _breach_problems(password, settings)
    if reasons:
        raise ValidationFailed(
            DETAIL, extra={"errors": [{"field": field, "message": r} for r in reasons]}
        )


def password_problems(password: str, *, email: str, display_name: str) -> list[str]:
    """Every offline reason to refuse ``password`` for this user; empty when it passes."""
    length = len(password)
    if length > MAX_LENGTH:
        # Nothing else is worth computing on input this long.
        return [f"Must be at most {MAX_LENGTH} characters long."]
    reasons: list[str] = []
    if length < MIN_LENGTH:
        reasons.append(f"Must be at least {MIN_LENGTH} characters long.")
    folded = _fold(password)
    common = folded in _common_passwords()
    if common:
        reasons.append("Is one of the most commonly used passwords.")
    reasons.extend(_context_problems(folded, email=email, display_name=display_name))
    if not common:
        weak = _strength_problem(password, _user_inputs(email, display_name))
        if weak:
            reasons.append(weak)
    return reasons


def _fold(text: str) -> str:
    """Compare text the way a person reads it: compatibility forms and case folded."""
    return unicodedata.normalize("NFKC", text).casefold()


@cache
def _common_passwords() -> frozenset[str]:
    entries: list[str] = FREQUENCY_LISTS["passwords"]
    return frozenset(_fold(entry) for entry in entries)


def _local_part(email: str) -> str:
    return email.rpartition("@")[0] if "@" in email else email


def _context_problems(folded: str, *, email: str, display_name: str) -> list[str]:
    reasons: list[str] = []
    email_f = _fold(email.strip())
    local_f = _fold(_local_part(email.strip()))
    name_f = _fold(display_name.strip())
    if email_f and email_f in folded:
        reasons.append("Must not contain your e-mail address.")
    elif len(local_f) >= MIN_CONTEXT_WORD and local_f in folded:
        reasons.append("Must not contain the part of your e-mail address before the @.")
    if len(name_f) >= MIN_CONTEXT_WORD and name_f in folded:
        reasons.append("Must not contain your name.")
    if APP_NAME in folded:
        reasons.append(f'Must not contain the word "{APP_NAME}".')
    return reasons


def _user_inputs(email: str, display_name: str) -> list[str]:
    """The words zxcvbn treats as known to an attacker who targets this user."""
    name = display_name.strip()
    words = [email.strip(), _local_part(email.strip()), name, *name.split(), APP_NAME]
    return [w for w in words if w]


def _strength_problem(password: str, user_inputs: list[str]) -> str | None:
    with _zxcvbn_lock:
        result: dict[str, Any] = zxcvbn(password[:SCORED_PREFIX], user_inputs=user_inputs)
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result.get("feedback") or {}
    hints = [str(feedback.get("warning") or ""), *map(str, feedback.get("suggestions") or [])]
    advice = " ".join(h for h in hints if h)
    return "Is too easy to guess." + (f" {advice}" if advice else "")


def _breach_problems(password: str, settings: Settings) -> list[str]:
    try:
        count = hibp.pwned_count(password, base_url=settings.hibp_url)
    except hibp.HibpUnavailable as exc:
        if settings.hibp_unreachable == "refuse":
            log.warning("hibp_unreachable", reason=exc.reason, action="refused")
            return [UNCHECKED]
        log.warning("hibp_unreachable", reason=exc.reason, action="allowed")
        return []
    if count > 0:
        return [BREACHED]
    return []
