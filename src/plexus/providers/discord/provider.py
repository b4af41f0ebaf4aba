"""Discord: post to a server's text channel through one of the channel's webhooks.

**Two ways in, one provider.** ``auth_kind`` is ``OAUTH2``: with the operator's Discord
application (``PLEXUS_PROVIDER_DISCORD_CLIENT_ID`` and ``_CLIENT_SECRET``) the user grants
the ``webhook.incoming`` scope, picks the channel on Discord's consent screen, and Discord's
token response carries the webhook it created for Plexus. As the alternative (no
application configured, or a channel the user would rather wire up by hand)
``connect_with_fields`` takes a pasted channel webhook URL. Posting is identical either
way; only creation and disconnection differ, so a second provider class would duplicate
everything for one branch. ``Account.settings["origin"]`` records which way a connection
came in (``"oauth"`` or ``"pasted"``).

**The webhook URL is the credential.** It is parsed strictly (``webhook_url``), reduced to
id and token, and stored in ``Credentials.secrets["webhook_url"]`` in its canonical
``discord.com`` form. Requests always go to the configured API base
(``PLEXUS_PROVIDER_DISCORD_API_URL``, Discord's by default), never to a host a user typed.

**Disconnecting.** For an OAuth-created webhook, Plexus deletes the webhook (it made it)
and revokes the grant at Discord's revoke endpoint. A pasted webhook belongs to the user
and may feed other tools; Plexus does not delete it, so disconnecting such a connection
changes nothing at Discord (the user deletes the webhook in the channel settings to be
sure it is dead).

**Posting.** Execute webhook with ``?wait=true`` (so Discord returns the message and its
id), ``allowed_mentions`` parsing nothing (content from a feed must not ping
``@everyone``). A post's text is plain text with its formatting in ``Post.spans``; it is
sent as Discord Markdown built by ``plexus.providers.spans.discord_markdown``, which
escapes everything else in the text (so only the author's formatting is read as markup,
and a literal ``*`` stays a star) and breaks ``@everyone``. Files go as multipart
``files[n]`` parts with ``payload_json``; read back and delete through the webhook's
message endpoints.

No SDK: the webhook surface is five endpoints, and discord.py or hikari would bring a
gateway client, their own HTTP stack and rate limiter in place of Plexus's guarded client.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_token_request

from plexus.providers.base import (
    Account,
    AuthKind,
    AuthorizationRequest,
    Capabilities,
    Connected,
    ConnectField,
    Credentials,
    Link,
    MediaItem,
    MediaRules,
    OAuthSpec,
    PostState,
    PostStatus,
    Provider,
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    Published,
    RateLimit,
    TextCounting,
    TextRules,
    raise_for_transport,
)
from plexus.providers.discord.errors import UNKNOWN_MESSAGE, UNKNOWN_WEBHOOK, error_code, error_for
from plexus.providers.discord.webhook_url import WebhookRef, origin_of, parse_webhook_url
from plexus.providers.oauth import credentials_from, revoke_token, token_request
from plexus.providers.spans import discord_markdown

if TYPE_CHECKING:
    from collections.abc import Mapping

    from plexus.providers.base import Post

DEFAULT_API_URL: Final = "https://discord.com/api/v10"
#: Message content is at most this many code points.
MAX_CONTENT: Final = 2000
ORIGIN_OAUTH: Final = "oauth"
ORIGIN_PASTED: Final = "pasted"
#: Discord's default upload limit per file (servers without boosts), in bytes.
MAX_FILE_BYTES: Final = 10 * 1024 * 1024
MAX_FILES: Final = 10
#: Attachment descriptions (alt text) are at most this long.
MAX_ALT_TEXT: Final = 1024
#: Webhook type 1 is "Incoming", the only kind a token can execute.
INCOMING_WEBHOOK: Final = 1
#: What ``Post.options`` may carry for Discord.
OPTIONS: Final = frozenset(
    {"username", "embed_title", "embed_description", "embed_url", "embed_color"}
)
_COLOR: Final = re.compile(r"#?(?P<hex>[0-9A-Fa-f]{6})")
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")
_HTTP_NOT_FOUND: Final = 404
DISCORD_OAUTH: Final = OAuthSpec(
    authorize_url="https://discord.com/oauth2/authorize",
    token_url="https://discord.com/api/oauth2/token",  # noqa: S106 - an endpoint, not a secret
    revoke_url="https://discord.com/api/oauth2/token/revoke",
    scopes=("webhook.incoming",),
)


def _attachment_name(item: MediaItem, index: int) -> str:
    """A file name Discord will keep: no path, no odd characters, never empty."""
    base = item.filename.replace("\\", "/").rsplit("/", 1)[-1]
    safe = _SAFE_NAME.sub("_", base).strip("._")[:100]
    return safe or f"file{index}"


class DiscordProvider(Provider):
    """Channel webhooks, created through OAuth2 (``webhook.incoming``) or pasted."""

    name = "discord"
    display_name = "Discord"
    auth_kind = AuthKind.OAUTH2
    oauth = DISCORD_OAUTH
    connect_fields = (
        ConnectField(
            name="webhook_url",
            label="Webhook URL",
            secret=True,
            help="Channel settings → Integrations → Webhooks → Copy Webhook URL",
        ),
    )
    settings_keys = ("client_id", "client_secret", "api_url")
    secret_settings_keys = ("client_secret",)
    capabilities = Capabilities(
        # Discord counts message content in code points.
        text=TextRules(max_length=MAX_CONTENT, counting=TextCounting.CODE_POINTS),
        media=MediaRules(
            max_items=MAX_FILES,
            image_types=frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"}),
            video_types=frozenset({"video/mp4", "video/webm", "video/quicktime"}),
            max_image_bytes=MAX_FILE_BYTES,
            max_video_bytes=MAX_FILE_BYTES,
            max_alt_text=MAX_ALT_TEXT,
        ),
        # Per webhook: 5 requests per 2 s, and 30 messages a minute per channel.
        rate_limits=(RateLimit(5, 2), RateLimit(30, 60)),
        rich_text=True,
    )

    # ---- configuration

    def _api_url(self) -> str:
        return (self.context.settings.get("api_url") or DEFAULT_API_URL).rstrip("/")

    def _extra_origin(self) -> str | None:
        """The operator's API origin, accepted in pasted URLs when it is not Discord's."""
        configured = self.context.settings.get("api_url")
        return origin_of(configured) if configured else None

    def oauth_spec(self, params: Mapping[str, str]) -> OAuthSpec:
        """Discord's endpoints; the token endpoints follow ``api_url`` when the operator
        points it elsewhere (a test server). The authorize URL is where browsers go and
        stays Discord's.
        """
        del params
        configured = self.context.settings.get("api_url")
        if not configured:
            return DISCORD_OAUTH
        base = configured.rstrip("/")
        return replace(
            DISCORD_OAUTH,
            token_url=f"{base}/oauth2/token",
            revoke_url=f"{base}/oauth2/token/revoke",
        )

    # ---- HTTP

    def _request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        tolerate: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """One call to the API base. ``tolerate``: 404 error codes that are an answer
        (an already deleted message), returned instead of raised.
        """
        # The host is the operator's (Discord's by default), never a user's: a pasted URL
        # only supplies an id and a token, so the client needs no SSRF guard.
        with self.context.client(guarded=False, base_url=self._api_url()) as http:
            try:
                response = http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise raise_for_transport(exc, "Discord") from None
        if response.is_success:
            return response
        if response.status_code == _HTTP_NOT_FOUND and error_code(response) in tolerate:
            return response
        raise error_for(response, action)

    @staticmethod
    def _object(response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderRejected(f"Discord's answer about the {what} was not a JSON object")
        return data

    @staticmethod
    def _webhook(link: Link) -> WebhookRef:
        return parse_webhook_url(link.credentials.require_secret("webhook_url"))

    @staticmethod
    def _message_id(external_id: str) -> str:
        if not external_id.isascii() or not external_id.isdigit():
            raise ProviderRejected("that is not a Discord message id")
        return external_id

    # ---- connecting

    def _account(self, hook: WebhookRef, origin: str) -> Account:
        """Read the webhook back (which proves the token works) and describe it."""
        data = self._object(
            self._request("GET", hook.path, action="reading the webhook"), "webhook"
        )
        if str(data.get("id")) != hook.id:
            raise ProviderRejected("Discord answered about a different webhook")
        if data.get("type", INCOMING_WEBHOOK) != INCOMING_WEBHOOK:
            raise ProviderRejected("only incoming webhooks can post; choose another webhook")
        channel_id = str(data.get("channel_id") or "")
        guild_id = str(data.get("guild_id") or "")
        url = (
            f"https://discord.com/channels/{guild_id}/{channel_id}"
            if guild_id and channel_id
            else None
        )
        return Account(
            external_id=hook.id,
            display_name=str(data.get("name") or f"Discord webhook {hook.id}"),
            url=url,
            settings={
                "webhook_id": hook.id,
                "channel_id": channel_id,
                "guild_id": guild_id,
                "origin": origin,
            },
        )

    def connect_with_fields(self, fields: Mapping[str, str]) -> Connected:
        """Connect a pasted channel webhook URL (checked at Discord before it is kept)."""
        hook = parse_webhook_url(fields.get("webhook_url") or "", extra_origin=self._extra_origin())
        try:
            account = self._account(hook, ORIGIN_PASTED)
        except ProviderNeedsReauth:
            # At connect time a dead webhook is the user's typo or a deleted webhook.
            raise ProviderRejected(
                "Discord does not know this webhook; copy its URL from the channel again"
            ) from None
        credentials = Credentials(secrets={"webhook_url": hook.canonical_url})
        return Connected(credentials=credentials, account=account)

    def finish_authorization(
        self,
        request: AuthorizationRequest,
        callback: Mapping[str, str],
        flow_data: Mapping[str, str],
    ) -> Connected:
        """Exchange the code; Discord's token response carries the webhook it created."""
        del flow_data
        if callback.get("error"):
            error = re.sub(r"[^a-z_]", "", callback["error"])[:40]
            raise ProviderRejected(f"the Discord authorization was not granted ({error})")
        if callback.get("state") not in (None, request.state):
            raise ProviderRejected("the callback does not belong to this authorization")
        code = callback.get("code")
        if not code:
            raise ProviderRejected("the callback carries no authorization code")
        if request.client is None:
            raise ProviderRejected("no OAuth client for this flow")
        spec = self.oauth_spec(request.params)
        extra = {"code_verifier": request.code_verifier} if spec.pkce else {}
        body = prepare_token_request(
            "authorization_code", "", redirect_uri=request.redirect_uri, code=code, **extra
        )
        with self.context.client(guarded=False) as http:
            data = token_request(http, spec, request.client, body, "Discord")
        credentials = credentials_from(data)
        webhook = data.get("webhook")
        hook_id = webhook.get("id") if isinstance(webhook, dict) else None
        hook_token = webhook.get("token") if isinstance(webhook, dict) else None
        if not isinstance(hook_id, str) or not isinstance(hook_token, str):
            self._revoke_grant(credentials, request)
            raise ProviderRejected(
                "Discord created no webhook: the webhook.incoming permission was not granted"
            )
        hook = WebhookRef(hook_id, hook_token)
        # The access token only serves to revoke the grant later; posting needs the
        # webhook alone, so its expiry must not make the connection look stale.
        credentials = replace(
            credentials, expires_at=None, secrets={"webhook_url": hook.canonical_url}
        )
        return self.complete_connection(credentials, request.params)

    def _revoke_grant(self, credentials: Credentials, request: AuthorizationRequest) -> None:
        """Give back a grant that is of no use (best effort: the flow fails anyway)."""
        if request.client is None:
            return
        spec = self.oauth_spec(request.params)
        try:
            with self.context.client(guarded=False) as http:
                revoke_token(http, spec, request.client, credentials, "Discord")
        except ProviderError:
            return

    def complete_connection(self, credentials: Credentials, params: Mapping[str, str]) -> Connected:
        """After the exchange: check the webhook Discord made and describe its channel."""
        del params
        hook = parse_webhook_url(credentials.require_secret("webhook_url"))
        return Connected(credentials=credentials, account=self._account(hook, ORIGIN_OAUTH))

    # ---- token life cycle

    def can_refresh(self, link: Link) -> bool:
        """Never: the webhook posts without the access token, which is kept to revoke."""
        del link
        return False

    def can_revoke(self, link: Link) -> bool:
        """Only an OAuth-created webhook (and its grant) is revoked; a pasted one is not."""
        return link.account.settings.get("origin") == ORIGIN_OAUTH

    def revoke(self, link: Link) -> None:
        """OAuth-created: delete the webhook Plexus made, then revoke the grant. Pasted:
        nothing at Discord, because the webhook is the user's own and may serve others.
        """
        if not self.can_revoke(link):
            return
        hook = self._webhook(link)
        # A refused token means the webhook cannot post any more either: nothing to delete.
        with contextlib.suppress(ProviderNeedsReauth):
            self._request(
                "DELETE",
                hook.path,
                action="deleting the webhook",
                tolerate=frozenset({UNKNOWN_WEBHOOK}),
            )
        super().revoke(link)

    # ---- what a connection does

    def check_connection(self, link: Link) -> Account:
        origin = str(link.account.settings.get("origin") or ORIGIN_PASTED)
        return self._account(self._webhook(link), origin)

    def _embed(self, options: Mapping[str, str]) -> dict[str, Any] | None:
        embed: dict[str, Any] = {}
        if options.get("embed_title"):
            embed["title"] = options["embed_title"]
        if options.get("embed_description"):
            embed["description"] = options["embed_description"]
        if options.get("embed_url"):
            url = options["embed_url"]
            if not url.startswith(("https://", "http://")):
                raise ProviderRejected("embed_url must be an http(s) URL")
            embed["url"] = url
        if options.get("embed_color"):
            match = _COLOR.fullmatch(options["embed_color"])
            if match is None:
                raise ProviderRejected("embed_color must be a hex colour like #5865F2")
            embed["color"] = int(match["hex"], 16)
        return embed or None

    def _payload(self, post: Post) -> dict[str, Any]:
        unknown = sorted(set(post.options) - OPTIONS)
        if unknown:
            raise ProviderRejected(f"Discord posts take no option {', '.join(unknown)[:80]}")
        content = discord_markdown(post.text, post.spans)
        if post.link and post.link not in post.text:
            content = f"{content}\n{post.link}" if content else post.link
        if len(content) > MAX_CONTENT:
            # The escapes and markers count too; Discord would refuse the whole message.
            raise ProviderRejected(
                f"with its formatting the text is {len(content)} characters; "
                f"Discord allows {MAX_CONTENT}"
            )
        # Parse nothing: a post's text must never ping @everyone, roles or users.
        payload: dict[str, Any] = {"allowed_mentions": {"parse": []}}
        if content:
            payload["content"] = content
        if post.options.get("username"):
            payload["username"] = post.options["username"]
        embed = self._embed(post.options)
        if embed:
            payload["embeds"] = [embed]
        return payload

    def _check_media(self, media: tuple[MediaItem, ...]) -> None:
        """Refuse what Discord would refuse before uploading up to 100 MiB for nothing."""
        rules = self.capabilities.media
        if len(media) > rules.max_items:
            raise ProviderRejected(f"Discord takes at most {rules.max_items} files per message")
        for item in media:
            if item.content_type not in rules.image_types | rules.video_types:
                raise ProviderRejected(f"Discord posts from Plexus take no {item.content_type}")
            if len(item.data) > MAX_FILE_BYTES:
                raise ProviderRejected("a file is over Discord's 10 MiB upload limit")
            if item.alt_text and len(item.alt_text) > MAX_ALT_TEXT:
                raise ProviderRejected(f"alt text is at most {MAX_ALT_TEXT} characters")

    def publish(self, link: Link, post: Post) -> Published:
        hook = self._webhook(link)
        payload = self._payload(post)
        params = {"wait": "true"}
        action = "posting the message"
        if post.media:
            self._check_media(post.media)
            names = [_attachment_name(item, i) for i, item in enumerate(post.media)]
            payload["attachments"] = [
                {"id": i, "filename": names[i]}
                | ({"description": item.alt_text} if item.alt_text else {})
                for i, item in enumerate(post.media)
            ]
            files = [
                (f"files[{i}]", (names[i], item.data, item.content_type))
                for i, item in enumerate(post.media)
            ]
            response = self._request(
                "POST",
                hook.path,
                action=action,
                params=params,
                data={"payload_json": json.dumps(payload)},
                files=files,
            )
        else:
            response = self._request("POST", hook.path, action=action, params=params, json=payload)
        message = self._object(response, "message")
        message_id = str(message.get("id") or "")
        if not message_id.isdigit():
            raise ProviderRejected("Discord accepted the message but returned no message id")
        return Published(external_id=message_id, url=self._message_url(link, message))

    @staticmethod
    def _message_url(link: Link, message: Mapping[str, Any]) -> str | None:
        guild_id = link.account.settings.get("guild_id")
        channel_id = message.get("channel_id") or link.account.settings.get("channel_id")
        if not guild_id or not channel_id:
            return None
        return f"https://discord.com/channels/{guild_id}/{channel_id}/{message['id']}"

    def fetch_status(self, link: Link, external_id: str) -> PostStatus:
        hook = self._webhook(link)
        path = f"{hook.path}/messages/{self._message_id(external_id)}"
        response = self._request(
            "GET", path, action="reading the message", tolerate=frozenset({UNKNOWN_MESSAGE})
        )
        if response.status_code == _HTTP_NOT_FOUND:
            return PostStatus(PostState.DELETED, detail="the message is gone from the channel")
        message = self._object(response, "message")
        return PostStatus(PostState.PUBLISHED, url=self._message_url(link, message))

    def delete(self, link: Link, external_id: str) -> None:
        hook = self._webhook(link)
        path = f"{hook.path}/messages/{self._message_id(external_id)}"
        # An unknown message was deleted already (in Discord, or by an earlier attempt).
        self._request(
            "DELETE", path, action="deleting the message", tolerate=frozenset({UNKNOWN_MESSAGE})
        )
