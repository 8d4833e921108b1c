"""``python -m comic_vine_dynamodb_store.demo``: the demo of :mod:`.runner`."""

from comic_vine_dynamodb_store.demo.runner import main

# Guarded: the spawned workers import this module again as ``__mp_main__``.
if __name__ == "__main__":
    raise SystemExit(main())
