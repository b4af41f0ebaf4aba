"""Creating user accounts: a normalised e-mail, a clean display name, a password that meets
the policy (R3) and only its hash stored. Never commits.

The address is stored sealed by the vault (associated data ``users:email:<id>``) next to
its keyed blind index (R9): look-ups and the one-account-per-address rule use the index,
and only showing the address opens the sealed value (``email_of``).
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
from plexus.vault_columns import USER_EMAIL

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from plexus.runtime import Runtime

EMAIL_MAX: Final = 320
#: The purpose label of e-mail blind indexes (users and invitations share it, so an
#: invitation finds the account of its address).
EMAIL_INDEX_PURPOSE: Final = "email"
#: What a new row's sealed address holds between its INSERT (which gives it the id the
#: associated data names) and the UPDATE that seals it, inside one transaction.
_NOT_YET_SEALED: Final = b""
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


def email_index(runtime: Runtime, address: str) -> str:
    """The blind index of an address already in its normalised form."""
    return runtime.blind_index.digest(EMAIL_INDEX_PURPOSE, address)


def email_of(runtime: Runtime, user: User) -> str:
    """The user's e-mail address, opened from its sealed column."""
    return runtime.secretbox.open(user.email_sealed, USER_EMAIL.context(user.id)).decode("utf-8")


def set_email(session: Session, runtime: Runtime, user: User, address: str) -> None:
    """Store the (normalised) ``address`` on ``user``: its blind index and the sealed value.

    The sealed value names the row's id, so a user not yet inserted is flushed first.
    Uniqueness is the caller's to check (``create_user`` does).
    """
    user.email_index = email_index(runtime, address)
    if user.id is None:
        user.email_sealed = _NOT_YET_SEALED
        session.add(user)
        session.flush()
    user.email_sealed = runtime.secretbox.seal(address.encode("utf-8"), USER_EMAIL.context(user.id))
    session.flush()


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
    index = email_index(runtime, address)
    if repo.by_email_index(index) is not None:
        raise EmailTaken("An account with this e-mail address already exists.")
    now = utcnow()
    user = User(
        email_index=index,
        email_sealed=_NOT_YET_SEALED,
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
    set_email(session, runtime, user, address)
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


def find_user(session: Session, runtime: Runtime, email: str) -> User | None:
    """The account with this (already normalised) address, if any."""
    return UserRepository(session).by_email_index(email_index(runtime, email))


def any_user_exists(session: Session) -> bool:
    return UserRepository(session).any_user()
