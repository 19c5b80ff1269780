"""A model name never chooses where the gateway connects or which path it asks for:
hosts come from the configuration, and a model in a URL is one percent-encoded
path segment."""

from __future__ import annotations

from protocols.ir import FORMAT_GEMINI, FORMAT_OPENAI_CHAT
from proxy.config import ProviderConfig
from proxy.provider import Provider


def test_model_names_are_one_encoded_path_segment() -> None:
    p = Provider(ProviderConfig(name="g", kind="gemini",
                                base_url="https://generativelanguage.googleapis.com"))
    path = p.path(FORMAT_GEMINI, "../../v1/other?key=x#y@evil.example/", True)
    assert path.startswith(b"/v1beta/models/")
    segment = path[len(b"/v1beta/models/"):path.index(b":streamGenerateContent")]
    assert b"/" not in segment and b"?" not in segment and b"#" not in segment
    assert (p.scheme, p.host, p.port) == ("https", "generativelanguage.googleapis.com", 443)
    assert p.embeddings_path("a/b").count(b"/") == p.embeddings_path("ab").count(b"/")


def test_openai_paths_do_not_carry_the_model() -> None:
    p = Provider(ProviderConfig(name="o", kind="openai", base_url="http://127.0.0.1:9/v1"))
    assert p.path(FORMAT_OPENAI_CHAT, "http://evil.example/", False) == b"/v1/chat/completions"
