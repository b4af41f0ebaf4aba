"""Creating user accounts: a normalised e-mail, a clean display name, a password that meets
the policy (R3) and only its hash stored. Never commits.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Final

from email_validator import EmailNotValidError, validate_email

from plexus.accounts.repository import UserRepository
from plexus.audit.events import Actor, AuditEventType, Target
from plexus.auth.password_policy import check_password
from plexus.errors import Conflict, ValidationFailed
from plexus.models.base import utcnow
from plexus.models.identity import User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.runtime import Runtime

EMAIL_MAX: Final = 320
NAME_MAX: Final = 120
#: The instance administrator ``plexus serve`` creates on a development machine's first
#: run. ``.local`` is a special-use name email-validator refuses; this one address is
#: accepted so that account can sign in (it receives no mail: Plexus sends none to it).
DEV_ADMIN_EMAIL: Final = "admin@plexus.local"
#: Bidirectional-text controls can make a name display as something else ("Trojan Source").
_BIDI_CONTROLS: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e") | frozenset(
    "\u2066\u2067\u2068\u2069"
)


class EmailTaken(Conflict):
    code, title = "email-taken", "E-mail address already registered"


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        "The request did not pass validation.",
        extra={"errors": [{"field": field, "message": message}]},
    )


def normalize_email(value: str) -> str:
    """The one form an e-mail address is stored, compared and looked up in.

    Syntax-checked by email-validator (no DNS lookup, so private and test domains work),
    Unicode-normalised, and lower-cased whole: ``Alice@Example.com`` and
    ``alice@example.com`` are one account. Raises ValidationFailed (422) when invalid.
    """
    candidate = value.strip()
    if candidate.lower() == DEV_ADMIN_EMAIL:
        return DEV_ADMIN_EMAIL
    if len(candidate) > EMAIL_MAX:
        raise _invalid("email", f"An e-mail address has at most {EMAIL_MAX} characters.")
    try:
        checked = validate_email(candidate, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise _invalid("email", str(exc)) from None
    return checked.normalized.lower()


def clean_name(value: str, *, field: str = "display_name", max_length: int = NAME_MAX) -> str:
    """A human-readable name: trimmed, 1 to ``max_length`` characters, NFC-normalised, with
    no control characters, line breaks or bidirectional overrides.
    """
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise _invalid(field, "This must not be empty.")
    if len(name) > max_length:
        raise _invalid(field, f"This has at most {max_length} characters.")
    for char in name:
        if char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
            raise _invalid(field, "This must not contain control or direction characters.")
    return name


def create_user(  # noqa: PLR0913 - an account's parts, all keyword-only
    session: Session,
    runtime: Runtime,
    *,
    email: str,
    display_name: str,
    password: str,
    instance_admin: bool = False,
    actor: Actor | None = None,
) -> User:
    """Create an account and audit it (``user:account:created``, instance chain).

    Raises ValidationFailed (422, with the policy's reasons) for a bad address, name or
    password, and EmailTaken (409) when the address has an account. The password is hashed
    before the address is looked up, so both outcomes cost the same time. ``actor`` is who
    created it; by default the new user themselves (sign-up, invitation).
    """
    address = normalize_email(email)
    name = clean_name(display_name)
    check_password(password, email=address, display_name=name, settings=runtime.settings)
    password_hash = runtime.passwords.hash(password)
    repo = UserRepository(session)
    if repo.by_email(address) is not None:
        raise EmailTaken("An account with this e-mail address already exists.")
    now = utcnow()
    user = User(
        email=address,
        display_name=name,
        password_hash=password_hash,
        password_changed_at=now,
        is_active=True,
        is_instance_admin=instance_admin,
        token_epoch=0,
        failed_logins=0,
        created_at=now,
    )
    if not repo.add(user):
        raise EmailTaken("An account with this e-mail address already exists.")
    runtime.audit.record(
        session,
        AuditEventType.USER_ACCOUNT_CREATED,
        actor or Actor("user", str(user.id)),
        target=Target("user", str(user.id)),
        context={"instance_admin": instance_admin},
    )
    return user


def get_user(session: Session, user_id: int) -> User | None:
    return UserRepository(session).get(user_id)


def find_user(session: Session, email: str) -> User | None:
    """The account with this (already normalised) address, if any."""
    return UserRepository(session).by_email(email)


def any_user_exists(session: Session) -> bool:
    return UserRepository(session).any_user()
