"""The contract tests every provider passes against its local platform server.

A provider's test module defines a class that inherits ``ProviderContract`` and supplies
three fixtures:

- ``fake``: the platform server (a fake that follows the platform's documented API, or a
  real open-source server), implementing ``PlatformControls``;
- ``provider``: the provider, built with a ``ProviderContext`` that points at ``fake``;
- ``link``: a ``Link`` with credentials that platform accepts.

It may override ``sample_post`` (a post the platform accepts) and ``rejected_post`` (one
the platform refuses). Every test asserts what the platform received or what the provider
raised, never a provider's internals. Only the test suite imports this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import pytest

from plexus.providers.base import (
    AuthKind,
    Capabilities,
    Link,
    Post,
    PostState,
    Provider,
    ProviderError,
    ProviderNeedsReauth,
    ProviderRejected,
    ProviderRetryable,
    ProviderTokenExpired,
    ProviderUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Callable


class Fault(StrEnum):
    """What a platform server can be told to do to its next API calls, each in the
    platform's own documented form (status, error body, rate-limit headers).
    """

    RATE_LIMITED = "rate_limited"  # 429 (or the platform's own) with a retry delay
    SERVER_ERROR = "server_error"  # 5xx
    UNAUTHORIZED = "unauthorized"  # the token or key was revoked
    TIMEOUT = "timeout"  # the answer comes later than the client waits
    REJECTED = "rejected"  # the platform refuses the request's content


class PlatformControls(Protocol):
    def arm(self, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` API calls fail with ``fault``."""

    def published_texts(self) -> list[str]:
        """The texts of the posts the platform holds now (deleted ones excluded)."""

    def revoked_tokens(self) -> list[str]:
        """Tokens (or keys) revoked at the platform so far."""

    def secrets_in_use(self) -> list[str]:
        """Every token, key or password the tests gave this platform."""


#: The retry delay every fake announces for ``Fault.RATE_LIMITED``, in seconds.
FAKE_RETRY_AFTER = 7


class ProviderContract:
    """Shared tests; see the module docstring for the fixtures a subclass provides."""

    #: The platform cannot be told to refuse content (e.g. a webhook sink); skip that test.
    supports_rejection: bool = True
    #: The platform offers no revocation for this auth kind (the link stays until deleted).
    supports_revocation: bool = True

    def sample_post(self, text: str) -> Post:
        return Post(text=text)

    def rejected_post(self) -> Post:
        """A post the platform refuses (by default: text far beyond any limit)."""
        return Post(text="x" * 100_000)

    # ---- declarations

    def test_contract_declarations(self, provider: Provider) -> None:
        cls = type(provider)
        assert cls.name.isidentifier()
        assert cls.name == cls.name.lower()
        assert cls.display_name
        assert isinstance(cls.auth_kind, AuthKind)
        assert isinstance(cls.capabilities, Capabilities)
        described = cls.capabilities.as_dict()
        assert described["text"]["counting"]
        if cls.auth_kind is AuthKind.OAUTH2:
            assert cls.oauth is not None or cls.oauth_spec is not Provider.oauth_spec
            if cls.oauth is not None:
                assert cls.oauth.scopes
                assert cls.oauth.authorize_url.startswith("https://")
                assert cls.oauth.token_url.startswith("https://")
        elif cls.auth_kind is not AuthKind.NONE:
            assert cls.connect_fields, "non-OAuth providers say what the user must give"
            assert any(f.secret for f in cls.connect_fields)

    # ---- the happy path

    def test_check_connection(self, provider: Provider, link: Link) -> None:
        account = provider.check_connection(link)
        assert account.external_id == link.account.external_id

    def test_publish_reaches_platform(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        text = "Contract test: publish reaches the platform ✓"
        published = provider.publish(link, self.sample_post(text))
        assert published.external_id
        assert any(text in t for t in fake.published_texts())

    def test_fetch_status_and_delete(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        text = "Contract test: status then delete"
        published = provider.publish(link, self.sample_post(text))
        caps = provider.limits_for(link.account)
        if caps.can_read_back:
            status = provider.fetch_status(link, published.external_id)
            assert status.state is PostState.PUBLISHED
        else:
            with pytest.raises(ProviderUnavailable):
                provider.fetch_status(link, published.external_id)
        if not caps.can_delete:
            with pytest.raises(ProviderUnavailable):
                provider.delete(link, published.external_id)
            return
        provider.delete(link, published.external_id)
        assert not any(text in t for t in fake.published_texts())
        if caps.can_read_back:
            try:
                status = provider.fetch_status(link, published.external_id)
            except ProviderRejected:
                return
            assert status.state is PostState.DELETED

    # ---- failures, as the platform reports them

    def _fails_with(
        self,
        provider: Provider,
        link: Link,
        fake: PlatformControls,
        fault: Fault,
        expected: type[ProviderError] | tuple[type[ProviderError], ...],
    ) -> ProviderError:
        fake.arm(fault, times=1)
        call: Callable[[], object] = lambda: provider.publish(  # noqa: E731 - one call, twice
            link, self.sample_post(f"Contract test: {fault.value}")
        )
        with pytest.raises(expected) as caught:
            call()
        error = caught.value
        for secret in fake.secrets_in_use():
            assert secret not in str(error)
            assert secret not in repr(error.args)
        return error

    def test_rate_limit_is_retryable_with_its_delay(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        error = self._fails_with(provider, link, fake, Fault.RATE_LIMITED, ProviderRetryable)
        assert isinstance(error, ProviderRetryable)
        assert error.rate_limited
        assert error.retry_after is not None
        assert abs(error.retry_after - FAKE_RETRY_AFTER) <= 1

    def test_server_error_is_retryable(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        error = self._fails_with(provider, link, fake, Fault.SERVER_ERROR, ProviderRetryable)
        assert isinstance(error, ProviderRetryable)
        assert not error.rate_limited

    def test_timeout_is_retryable(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        self._fails_with(provider, link, fake, Fault.TIMEOUT, ProviderRetryable)

    def test_revoked_credentials_need_reauth(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        self._fails_with(
            provider, link, fake, Fault.UNAUTHORIZED, (ProviderNeedsReauth, ProviderTokenExpired)
        )

    def test_rejection_is_final(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        if not self.supports_rejection:
            pytest.skip("this platform accepts any content it is sent")
        self._fails_with(provider, link, fake, Fault.REJECTED, ProviderRejected)

    def test_platform_refuses_invalid_content(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        before = len(fake.published_texts())
        with pytest.raises(ProviderRejected):
            provider.publish(link, self.rejected_post())
        assert len(fake.published_texts()) == before

    # ---- disconnect

    def test_revoke_reaches_platform(
        self, provider: Provider, link: Link, fake: PlatformControls
    ) -> None:
        if not self.supports_revocation:
            pytest.skip("this platform offers no revocation for this kind of credential")
        provider.revoke(link)
        assert fake.revoked_tokens(), "disconnect must reach the platform's revoke endpoint"
