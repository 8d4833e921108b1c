"""Demo support: a local, deterministic stand-in for the Comic Vine API.

Kept to the standard library so demos and tests need no network access, no API key and no
optional dependencies.
"""

from comic_vine_dynamodb_store.demo.fake_api import FakeComicVine

__all__ = ["FakeComicVine"]
