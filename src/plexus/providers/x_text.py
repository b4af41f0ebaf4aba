"""A post's length as X counts it: the weighted count of twitter-text (configuration v3).

Most Latin, Greek, Cyrillic and other scripts up to U+10FF, and a few punctuation ranges,
weigh 1; everything else (CJK, most symbols) weighs 2; an emoji sequence, however many
code points it holds, weighs 2; and every URL, with or without a scheme
(``example.com`` counts too), weighs ``transformed_url_length`` (23) whatever its real
length. The text is NFC-normalised first. ``twitter-text-parser`` implements this from
X's own specification, URL extractor and emoji list included.

twitter-text-parser 3.0 reads its emoji list with ``pkg_resources``, which it does not
declare and which setuptools deprecated (and warns about when imported). The one call it
makes, ``resource_string(module_name, file)``, is served here from ``importlib.resources``
while the package is first imported, so neither setuptools nor its warning is needed.
"""

from __future__ import annotations

import importlib
import importlib.resources
import sys
import threading
import types
from functools import cache
from typing import Any, Final, Protocol, cast

#: What X charges for any URL (twitter-text's ``transformed_url_length``).
X_URL_LENGTH: Final = 23
_IMPORT_LOCK: Final = threading.Lock()


class _Parsed(Protocol):
    weightedLength: int  # noqa: N815 - the library's attribute name


class _ParseTweet(Protocol):
    def __call__(self, text: str, options: dict[str, Any]) -> _Parsed: ...


def _resource_string(module_name: str, resource: str) -> bytes:
    """``pkg_resources.resource_string``: a file next to the module ``module_name``."""
    package = module_name.rpartition(".")[0] or module_name
    return importlib.resources.files(package).joinpath(resource).read_bytes()


@cache
def _library() -> tuple[_ParseTweet, dict[str, Any]]:
    """``parse_tweet`` and the default configuration, imported once."""
    with _IMPORT_LOCK:
        shim = None
        if "pkg_resources" not in sys.modules:
            shim = types.ModuleType("pkg_resources")
            shim.resource_string = _resource_string  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = shim
        try:
            parser = importlib.import_module("twitter_text.parse_tweet")
        finally:
            if shim is not None and sys.modules.get("pkg_resources") is shim:
                del sys.modules["pkg_resources"]
    config = importlib.import_module("twitter_text.config").config
    return cast("_ParseTweet", parser.parse_tweet), dict(config["defaults"])


def weighted_length(text: str, url_length: int = X_URL_LENGTH) -> int:
    """The number of characters X charges ``text`` against its limit (280 for most)."""
    parse_tweet, defaults = _library()
    options = {**defaults, "transformed_url_length": url_length}
    return int(parse_tweet(text, options).weightedLength)
