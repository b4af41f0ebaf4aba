"""Instagram content publishing through media containers.

A post is published in steps: the caption is checked here (length, at most 30 hashtags
and 20 @mentions), the account's 24-hour publishing quota is read, a container is
created for each medium (Instagram fetches the media from its public URL), the
containers are polled until Instagram has processed them, and the finished container is
published. A carousel is up to ten child containers (``is_carousel_item=true``) under one
``media_type=CAROUSEL`` container; a single video is published as a reel, as Instagram
does with every single feed video since July 2023.

Unpublished containers are harmless: Instagram lets them expire after 24 hours, so a
publication abandoned half-way (still processing at the deadline) never shows up.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from plexus.providers.base import (
    MediaItem,
    Post,
    ProviderError,
    ProviderRejected,
    ProviderRetryable,
    Published,
    TextCounting,
    text_length,
)
from plexus.providers.instagram.graph import PLATFORM

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from plexus.providers.base import Capabilities
    from plexus.providers.instagram.graph import Graph

MAX_CAPTION: Final = 2200
MAX_HASHTAGS: Final = 30
MAX_MENTIONS: Final = 20
MAX_CAROUSEL: Final = 10
MIN_CAROUSEL: Final = 2
#: A hashtag starts a word; ``&#35;`` entities and the middle of words do not count.
_HASHTAG: Final = re.compile(r"(?<![\w&#])#\w+")
#: An @mention starts a word, so e-mail addresses are not mentions.
_MENTION: Final = re.compile(r"(?<![\w.@])@[A-Za-z0-9_.]+")
#: What to wait before trying again when Instagram is still processing at the deadline.
STILL_PROCESSING_RETRY: Final = 60.0


class Kind:
    IMAGE: Final = "IMAGE"
    REELS: Final = "REELS"
    CAROUSEL: Final = "CAROUSEL"


@dataclass(frozen=True, slots=True)
class Plan:
    """What will be sent: the kind of post, its media in order and the caption."""

    kind: str
    media: tuple[MediaItem, ...]
    caption: str
    share_to_feed: bool | None = None


def _public_url(item: MediaItem) -> str:
    url = item.public_url
    parts = urlsplit(url) if url else None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise ProviderRejected(
            f"{item.filename}: Instagram fetches media from a public https URL; "
            "host it first (an image host such as Imgur gives one)"
        )
    return str(url)


def check_caption(text: str) -> None:
    if text_length(text, TextCounting.CODE_POINTS) > MAX_CAPTION:
        raise ProviderRejected(f"the caption is longer than {MAX_CAPTION} characters")
    if len(_HASHTAG.findall(text)) > MAX_HASHTAGS:
        raise ProviderRejected(f"Instagram allows at most {MAX_HASHTAGS} hashtags")
    if len(_MENTION.findall(text)) > MAX_MENTIONS:
        raise ProviderRejected(f"Instagram allows at most {MAX_MENTIONS} @mentions")


def _check_item(item: MediaItem, caps: Capabilities) -> None:
    rules = caps.media
    if item.is_video:
        if item.content_type not in rules.video_types:
            raise ProviderRejected(f"{item.filename}: Instagram takes MP4 or MOV videos")
        limit = rules.max_video_bytes
    else:
        if item.content_type not in rules.image_types:
            raise ProviderRejected(f"{item.filename}: Instagram takes JPEG images only")
        limit = rules.max_image_bytes
    if limit is not None and len(item.data) > limit:
        raise ProviderRejected(f"{item.filename} is larger than Instagram accepts")
    _public_url(item)


def plan(post: Post, caps: Capabilities) -> Plan:
    """Check ``post`` against Instagram's rules; the plan to publish it, or a refusal."""
    media = post.media
    if not media:
        raise ProviderRejected("an Instagram post needs at least one image or video")
    if len(media) > MAX_CAROUSEL:
        raise ProviderRejected(f"an Instagram carousel holds at most {MAX_CAROUSEL} items")
    for item in media:
        _check_item(item, caps)
    check_caption(post.text)
    share = post.options.get("share_to_feed")
    if share not in (None, "true", "false"):
        raise ProviderRejected('the option share_to_feed is "true" or "false"')
    if len(media) >= MIN_CAROUSEL:
        return Plan(Kind.CAROUSEL, media, post.text)
    if media[0].is_video:
        return Plan(Kind.REELS, media, post.text, share_to_feed=share != "false")
    return Plan(Kind.IMAGE, media, post.text)


@dataclass(frozen=True, slots=True)
class Quota:
    """An account's content publishing limit: posts published in the last 24 hours
    (``quota_usage``) out of how many it may publish (``config.quota_total``).
    """

    usage: int
    total: int

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.usage)


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def read_quota(graph: Graph, ig_user_id: str) -> Quota | None:
    """``GET /{ig-user-id}/content_publishing_limit``; None when the answer lacks the
    usage or the total (Graph returns only ``quota_usage`` unless ``config`` is asked for).
    """
    body = graph.get(f"{ig_user_id}/content_publishing_limit", {"fields": "quota_usage,config"})
    rows = body.get("data")
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    config = row.get("config")
    usage = _count(row.get("quota_usage"))
    total = _count(config.get("quota_total")) if isinstance(config, dict) else None
    if usage is None or total is None:
        return None
    return Quota(usage=usage, total=total)


@dataclass
class Publisher:
    """Publishes plans for one Instagram professional account."""

    graph: Graph
    ig_user_id: str
    poll_interval: float
    deadline: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    created: list[str] = field(default_factory=list)

    def check_quota(self) -> None:
        """Refuse (to be retried later) when the 24-hour publishing quota is used up."""
        quota = read_quota(self.graph, self.ig_user_id)
        if quota is not None and quota.remaining == 0:
            raise ProviderRetryable(
                f"the account used its {quota.total} posts of the last 24 hours on {PLATFORM}",
                rate_limited=True,
            )

    def publish(self, plan: Plan) -> Published:
        self.check_quota()
        started = self.clock()
        if plan.kind == Kind.CAROUSEL:
            children = [self._child(item) for item in plan.media]
            self._wait(children, started)
            container = self._create(
                {"media_type": "CAROUSEL", "children": ",".join(children), "caption": plan.caption}
            )
        elif plan.kind == Kind.REELS:
            fields = {
                "media_type": "REELS",
                "video_url": _public_url(plan.media[0]),
                "caption": plan.caption,
            }
            if plan.share_to_feed is not None:
                fields["share_to_feed"] = "true" if plan.share_to_feed else "false"
            container = self._create(fields)
        else:
            item = plan.media[0]
            fields = {"image_url": _public_url(item), "caption": plan.caption}
            if item.alt_text:
                fields["alt_text"] = item.alt_text
            container = self._create(fields)
        self._wait([container], started)
        body = self.graph.post(f"{self.ig_user_id}/media_publish", {"creation_id": container})
        media_id = str(body.get("id") or "")
        if not media_id:
            raise ProviderRetryable(f"{PLATFORM} published without returning the media id")
        return Published(external_id=media_id, url=self._permalink(media_id))

    def _child(self, item: MediaItem) -> str:
        if item.is_video:
            return self._create(
                {"media_type": "VIDEO", "video_url": _public_url(item), "is_carousel_item": "true"}
            )
        return self._create({"image_url": _public_url(item), "is_carousel_item": "true"})

    def _create(self, fields: dict[str, str]) -> str:
        body = self.graph.post(f"{self.ig_user_id}/media", fields)
        container = str(body.get("id") or "")
        if not container:
            raise ProviderRetryable(f"{PLATFORM} created a container without an id")
        self.created.append(container)
        return container

    def _wait(self, containers: Sequence[str], started: float) -> None:
        """Poll ``status_code`` until every container is FINISHED, or the deadline."""
        pending = list(containers)
        while True:
            still: list[str] = []
            for container in pending:
                body = self.graph.get(container, {"fields": "status_code,status"})
                status = str(body.get("status_code") or "")
                if status == "ERROR":
                    detail = str(body.get("status") or "no detail")
                    raise ProviderRejected(f"{PLATFORM} could not process the media: {detail}")
                if status == "EXPIRED":
                    raise ProviderRetryable(f"the {PLATFORM} container expired before publishing")
                if status not in ("FINISHED", "PUBLISHED"):
                    still.append(container)
            if not still:
                return
            if self.clock() - started + self.poll_interval > self.deadline:
                raise ProviderRetryable(
                    f"{PLATFORM} is still processing the media; try again later",
                    retry_after=STILL_PROCESSING_RETRY,
                )
            self.sleep(self.poll_interval)
            pending = still

    def _permalink(self, media_id: str) -> str | None:
        # The post is live once media_publish answered: a failure to read its link must
        # not turn into an error, or a retry would publish it twice.
        try:
            body = self.graph.get(media_id, {"fields": "id,permalink"})
        except ProviderError:
            return None
        link = body.get("permalink")
        return str(link) if link else None
