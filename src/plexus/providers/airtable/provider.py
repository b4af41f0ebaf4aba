"""Airtable: a connection is one table of one base; a "post" is one record in it.

Connecting
    ``AuthKind.OAUTH2`` is the main path: authorization code with PKCE S256 against
    ``airtable.com/oauth2/v1``, client authentication with HTTP Basic when the operator
    configured a client secret (public integrations without one send only ``client_id``).
    Access tokens live about an hour; every refresh returns a new refresh token and kills
    the old one (``rotates_refresh_tokens``), so the connection service must store each
    refreshed pair before anything else uses the connection.

    A personal access token (PAT) is the alternative for people who cannot or do not want
    to register an OAuth integration: the user pastes it into the ``personal_access_token``
    connect field and the service calls ``connect_with_fields``. A PAT never expires and
    cannot be refreshed; the stored credentials are just ``access_token``. Either way the
    same non-secret connect fields say where posts go: ``base_id``, ``table`` (name or id),
    ``text_field`` (a text field receiving the post text) and, optionally, ``link_field``
    (a field receiving ``Post.link``; without it the link is appended to the text).
    Connecting checks all of them against the base's schema and remembers the resolved
    table id in ``Account.settings``.

Publishing
    ``publish`` creates one record ``{text_field: text, link_field: link}``; ``Post.options``
    keys of the form ``field:<name>`` set further cells. ``delete`` deletes the record,
    ``fetch_status`` reads it back (a 404 means it was deleted). Airtable has no
    idempotency key, so a retried publish after a lost answer can create a second record.

Disconnecting
    Airtable documents no token revocation endpoint for OAuth integrations (its OAuth
    reference covers only the authorize and token routes), so ``revoke`` is a no-op and a
    disconnect only deletes the stored tokens; users revoke access under their Airtable
    account's integrations page. PATs are revoked where they were made.

The records API (``list_records``, ``iter_records``, ``create_records``,
``update_records``, ``delete_records``) and the metadata API (``list_bases``,
``get_base_schema``) are public for the sync feature.

Why no SDK: ``pyairtable`` is a thin layer over ``requests``; the protocol work here is a
handful of JSON routes, while using it would bypass Plexus's outbound client (timeouts,
no ambient proxies, redirect refusal) and its error mapping. Our own httpx calls it is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from plexus.providers.airtable.api import (
    API_URL,
    MAX_LONG_TEXT,
    MAX_PAGE_SIZE,
    MAX_RECORDS_PER_REQUEST,
    OAUTH_URL,
    REQUESTS_PER_SECOND_PER_BASE,
    WEB_URL,
    AirtableApi,
    AirtableBase,
    AirtableRecord,
    AirtableTable,
    RecordPage,
    checked_base_id,
    checked_record_id,
    checked_table,
    record_from,
    records_path,
)
from plexus.providers.base import (
    Account,
    AuthKind,
    Capabilities,
    Connected,
    ConnectField,
    Credentials,
    Link,
    OAuthSpec,
    Post,
    PostState,
    PostStatus,
    Provider,
    ProviderRejected,
    ProviderRetryable,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
    TokenAuthMethod,
    text_length,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

#: Enough to write records into the chosen table and to check that it exists.
SCOPES: Final = ("data.records:read", "data.records:write", "schema.bases:read")
#: Field types that hold plain text a post can be written into.
TEXT_FIELD_TYPES: Final = frozenset({"singleLineText", "multilineText", "richText"})
LINK_FIELD_TYPES: Final = TEXT_FIELD_TYPES | {"url"}
#: ``Post.options`` keys that set another cell of the record.
FIELD_OPTION_PREFIX: Final = "field:"


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a connection's posts go."""

    base_id: str
    table: str
    text_field: str
    link_field: str | None


def _target_from(values: Mapping[str, Any]) -> _Target:
    base_id = checked_base_id(str(values.get("base_id") or ""))
    table = checked_table(str(values.get("table_id") or values.get("table") or ""))
    text_field = str(values.get("text_field") or "").strip()
    if not text_field:
        raise ProviderRejected("say which Airtable field receives the post text (text_field)")
    link_field = str(values.get("link_field") or "").strip() or None
    return _Target(base_id, table, text_field, link_field)


class AirtableProvider(Provider):
    """Records in one Airtable table, connected with OAuth2 (PKCE) or a personal token."""

    name = "airtable"
    display_name = "Airtable"
    auth_kind = AuthKind.OAUTH2
    capabilities: ClassVar[Capabilities] = Capabilities(
        text=TextRules(max_length=MAX_LONG_TEXT, counting=TextCounting.CODE_POINTS, required=True),
        rate_limits=(RateLimit(REQUESTS_PER_SECOND_PER_BASE, 1, "connection"),),
    )
    #: The production endpoints; ``oauth_spec`` honours the operator's ``oauth_url``.
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url=f"{OAUTH_URL}/oauth2/v1/authorize",
        token_url=f"{OAUTH_URL}/oauth2/v1/token",
        scopes=SCOPES,
        token_auth_method=TokenAuthMethod.CLIENT_SECRET_BASIC,
    )
    connect_fields: ClassVar[tuple[ConnectField, ...]] = (
        ConnectField("base_id", "Base ID", help="Starts with 'app'; it is in the base's URL."),
        ConnectField("table", "Table", help="The table's name or id ('tbl…')."),
        ConnectField("text_field", "Text field", help="The text field that receives the post."),
        ConnectField(
            "link_field",
            "Link field",
            required=False,
            help="Optional: a field for the post's link; otherwise it is added to the text.",
        ),
        ConnectField(
            "personal_access_token",
            "Personal access token",
            secret=True,
            required=False,
            help="Instead of signing in with Airtable: a token with the scopes "
            + ", ".join(SCOPES)
            + " and access to the base.",
        ),
    )
    settings_keys: ClassVar[tuple[str, ...]] = (
        "client_id",
        "client_secret",
        "api_url",
        "oauth_url",
    )
    secret_settings_keys: ClassVar[tuple[str, ...]] = ("client_secret",)
    rotates_refresh_tokens: ClassVar[bool] = True

    # ---- configuration

    @property
    def api_url(self) -> str:
        return (self.context.settings.get("api_url") or API_URL).rstrip("/")

    def oauth_spec(self, params: Mapping[str, str]) -> OAuthSpec:
        del params
        origin = (self.context.settings.get("oauth_url") or OAUTH_URL).rstrip("/")
        return OAuthSpec(
            authorize_url=f"{origin}/oauth2/v1/authorize",
            token_url=f"{origin}/oauth2/v1/token",
            scopes=SCOPES,
            token_auth_method=TokenAuthMethod.CLIENT_SECRET_BASIC,
        )

    def is_configured(self) -> bool:
        # Personal access tokens work without any operator setting; the OAuth flow needs
        # ``client_id`` and says so (``oauth_client`` raises ProviderUnavailable).
        return True

    @contextlib.contextmanager
    def _api(self, credentials: Credentials) -> Iterator[AirtableApi]:
        # The API host is the operator's setting, never a user's: no SSRF guard needed.
        with self.context.client(guarded=False, base_url=self.api_url) as http:
            yield AirtableApi(http, credentials)

    # ---- connecting

    def complete_connection(self, credentials: Credentials, params: Mapping[str, str]) -> Connected:
        """Check the token, the base, the table and the fields; describe the account."""
        target = _target_from(params)
        with self._api(credentials) as api:
            me = api.whoami()
            tables = api.tables(target.base_id)
        account = self._account(me, target, tables)
        return Connected(credentials=credentials, account=account)

    def connect_with_fields(self, fields: Mapping[str, str]) -> Connected:
        """Connect with a personal access token (the alternative to the OAuth flow)."""
        token = (fields.get("personal_access_token") or "").strip()
        if not token:
            raise ProviderRejected(
                "paste a personal access token, or connect by signing in with Airtable"
            )
        if any(ch.isspace() for ch in token):
            raise ProviderRejected("a personal access token holds no spaces")
        params = {k: v for k, v in fields.items() if k != "personal_access_token"}
        return self.complete_connection(Credentials(access_token=token), params)

    def _account(
        self, me: Mapping[str, Any], target: _Target, tables: Sequence[AirtableTable]
    ) -> Account:
        user_id = str(me.get("id") or "")
        if not user_id:
            raise ProviderRetryable("Airtable did not say whose token this is")
        table = next((t for t in tables if target.table in {t.id, t.name}), None)
        if table is None:
            raise ProviderRejected(f"the base {target.base_id} has no table {target.table!r}")
        text_field = table.field(target.text_field)
        if text_field is None or text_field.type not in TEXT_FIELD_TYPES:
            raise ProviderRejected(
                f"the table {table.name!r} has no text field {target.text_field!r}"
            )
        settings: dict[str, Any] = {
            "user_id": user_id,
            "base_id": target.base_id,
            "table_id": table.id,
            "table_name": table.name,
            "text_field": text_field.name,
        }
        if target.link_field:
            link_field = table.field(target.link_field)
            if link_field is None or link_field.type not in LINK_FIELD_TYPES:
                raise ProviderRejected(
                    f"the table {table.name!r} has no text or URL field {target.link_field!r}"
                )
            settings["link_field"] = link_field.name
        who = str(me.get("email") or user_id)
        return Account(
            # One Airtable user may connect several tables: each is its own connection.
            external_id=f"{user_id}/{target.base_id}/{table.id}",
            display_name=f"{who} · {table.name}",
            url=f"{WEB_URL}/{target.base_id}/{table.id}",
            settings=settings,
        )

    def check_connection(self, link: Link) -> Account:
        """``whoami`` plus the base's schema: the token works and the table is still there."""
        target = self._target(link)
        with self._api(link.credentials) as api:
            me = api.whoami()
            tables = api.tables(target.base_id)
        return self._account(me, target, tables)

    # ---- publishing

    def _target(self, link: Link) -> _Target:
        return _target_from({**link.params, **link.account.settings})

    def publish(self, link: Link, post: Post) -> Published:
        """Create one record holding the post's text (and link) in the connection's table."""
        target = self._target(link)
        if post.media:
            raise ProviderRejected("Airtable connections take text only, no media")
        text = post.text
        fields: dict[str, Any] = {}
        if post.link and target.link_field:
            fields[target.link_field] = post.link
        elif post.link and post.link not in text:
            text = f"{text}\n\n{post.link}" if text else post.link
        rules = self.limits_for(link.account).text
        if rules.required and not text.strip():
            raise ProviderRejected("the post has no text")
        if rules.max_length is not None and text_length(text, rules.counting) > rules.max_length:
            raise ProviderRejected(
                f"the text is longer than Airtable's {rules.max_length} characters"
            )
        fields[target.text_field] = text
        for key, value in post.options.items():
            name = key.removeprefix(FIELD_OPTION_PREFIX)
            if name == key or not name:
                raise ProviderRejected(f"unknown Airtable option {key!r} (use 'field:<name>')")
            if name in {target.text_field, target.link_field}:
                raise ProviderRejected(f"the field {name!r} already receives the post")
            fields[name] = value
        (record,) = self.create_records(link, target.base_id, target.table, [fields])
        return Published(external_id=record.id, url=self._record_url(target, record.id))

    def _record_url(self, target: _Target, record_id: str) -> str | None:
        if not target.table.startswith("tbl"):
            return None
        return f"{WEB_URL}/{target.base_id}/{target.table}/{record_id}"

    def delete(self, link: Link, external_id: str) -> None:
        """Delete the record; one that is already gone counts as deleted."""
        target = self._target(link)
        path = f"{records_path(target.base_id, target.table)}/{checked_record_id(external_id)}"
        with self._api(link.credentials) as api:
            api.request("DELETE", path, base_id=target.base_id, missing_ok=True)

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        """Read the record back: PUBLISHED while it exists, DELETED once Airtable has none."""
        target = self._target(link)
        path = f"{records_path(target.base_id, target.table)}/{checked_record_id(external_id)}"
        with self._api(link.credentials) as api:
            data = api.request("GET", path, base_id=target.base_id, missing_ok=True)
        if data is None:
            return PostStatus(PostState.DELETED, detail="Airtable has no such record")
        record = record_from(data)
        return PostStatus(PostState.PUBLISHED, url=self._record_url(target, record.id))

    # ---- the records API, for sync

    def list_records(  # noqa: PLR0913 - mirrors Airtable's list-records parameters
        self,
        link: Link,
        base_id: str,
        table: str,
        *,
        offset: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | None = None,
        filter_formula: str | None = None,
    ) -> RecordPage:
        """One page of a table's records (at most 100); ``RecordPage.offset`` fetches the
        next page and is None on the last. ``fields`` limits the cells returned;
        ``filter_formula`` is an Airtable formula (``filterByFormula``) a record must meet.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ProviderRejected(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        query: list[tuple[str, str]] = [("pageSize", str(page_size))]
        if offset:
            query.append(("offset", offset))
        query.extend(("fields[]", name) for name in fields or ())
        if filter_formula:
            query.append(("filterByFormula", filter_formula))
        with self._api(link.credentials) as api:
            data = api.must("GET", records_path(base_id, table), base_id=base_id, params=query)
        records = tuple(record_from(r) for r in data.get("records") or ())
        next_offset = data.get("offset")
        return RecordPage(records, next_offset if isinstance(next_offset, str) else None)

    def iter_records(  # noqa: PLR0913 - the list-records parameters, minus the offset
        self,
        link: Link,
        base_id: str,
        table: str,
        *,
        page_size: int = MAX_PAGE_SIZE,
        fields: Sequence[str] | None = None,
        filter_formula: str | None = None,
    ) -> Iterator[AirtableRecord]:
        """Every record of the table, page after page (each page is one paced request)."""
        offset: str | None = None
        while True:
            page = self.list_records(
                link,
                base_id,
                table,
                offset=offset,
                page_size=page_size,
                fields=fields,
                filter_formula=filter_formula,
            )
            yield from page.records
            if page.offset is None:
                return
            if page.offset == offset:
                raise ProviderRetryable("Airtable returned the same page offset twice")
            offset = page.offset

    @staticmethod
    def _batch(items: Sequence[Any], what: str) -> None:
        if not items:
            raise ProviderRejected(f"no records to {what}")
        if len(items) > MAX_RECORDS_PER_REQUEST:
            raise ProviderRejected(
                f"Airtable takes at most {MAX_RECORDS_PER_REQUEST} records per request to {what}"
            )

    def create_records(
        self,
        link: Link,
        base_id: str,
        table: str,
        records: Sequence[Mapping[str, Any]],
        *,
        typecast: bool = False,
    ) -> list[AirtableRecord]:
        """Create up to 10 records (each a mapping of field name to value) in one request;
        returns them as created, in order. ``typecast`` lets Airtable convert strings to
        the fields' types (and create select options).
        """
        self._batch(records, "create")
        body = {"records": [{"fields": dict(r)} for r in records], "typecast": typecast}
        with self._api(link.credentials) as api:
            data = api.must("POST", records_path(base_id, table), base_id=base_id, json=body)
        created = [record_from(r) for r in data.get("records") or ()]
        if len(created) != len(records):
            raise ProviderRetryable("Airtable did not return every record it was asked to create")
        return created

    def update_records(
        self,
        link: Link,
        base_id: str,
        table: str,
        updates: Mapping[str, Mapping[str, Any]],
        *,
        typecast: bool = False,
    ) -> list[AirtableRecord]:
        """PATCH up to 10 records (record id → the cells to change; others stay as they
        are); returns the updated records.
        """
        self._batch(list(updates), "update")
        body = {
            "records": [
                {"id": checked_record_id(record_id), "fields": dict(cells)}
                for record_id, cells in updates.items()
            ],
            "typecast": typecast,
        }
        with self._api(link.credentials) as api:
            data = api.must("PATCH", records_path(base_id, table), base_id=base_id, json=body)
        return [record_from(r) for r in data.get("records") or ()]

    def delete_records(
        self, link: Link, base_id: str, table: str, record_ids: Sequence[str]
    ) -> list[str]:
        """Delete up to 10 records in one request; returns the ids Airtable deleted."""
        self._batch(record_ids, "delete")
        query = [("records[]", checked_record_id(record_id)) for record_id in record_ids]
        with self._api(link.credentials) as api:
            data = api.must("DELETE", records_path(base_id, table), base_id=base_id, params=query)
        return [
            str(r["id"])
            for r in data.get("records") or ()
            if isinstance(r, dict) and r.get("deleted") and isinstance(r.get("id"), str)
        ]

    # ---- the metadata API

    def list_bases(self, link: Link) -> list[AirtableBase]:
        """Every base the token may reach, with the user's permission level on each."""
        with self._api(link.credentials) as api:
            return list(api.bases())

    def get_base_schema(self, link: Link, base_id: str) -> list[AirtableTable]:
        """The tables of a base with their fields (needs ``schema.bases:read``)."""
        with self._api(link.credentials) as api:
            return api.tables(base_id)
