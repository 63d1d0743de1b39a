"""Import shim that lets the Basho Python client riak==2.7.0 load on Python 3.11.

The client (and its python3_protobuf 2.5.0 dependency) was written for
Python 2.7/3.5 and breaks on 3.10+ in two ways, both at import time:

* it imports abstract base classes (Iterable, Mapping, Sized, Sequence, Set,
  MutableSet, Callable, ...) from ``collections``; they live only in
  ``collections.abc`` since Python 3.10;
* ``riak.codecs`` calls ``collections.namedtuple(..., verbose=False)``; the
  ``verbose`` keyword was removed in Python 3.7.

Rather than editing site-packages (which setup.sh may recreate at any time),
this module patches the ``collections`` module in memory. It must be imported
before the first ``import riak``; ``conftest.py`` does that for the tests.
Importing it twice is harmless.
"""

import collections
import collections.abc
import functools
import os

# python3_protobuf 2.5.0 ships only its pure-Python runtime, and it switches to
# its (Python 2 only, unimportable) C++ path for ANY other value of this
# variable, e.g. "upb" or "cpp" left in the environment for a modern protobuf.
# Force the one value that works, before google.protobuf is first imported.
os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"

# Every ABC that used to be re-exported from `collections` before 3.10.
_MOVED_ABCS = (
    "Awaitable", "Coroutine", "AsyncIterable", "AsyncIterator", "AsyncGenerator",
    "Hashable", "Iterable", "Iterator", "Generator", "Reversible", "Sized",
    "Container", "Callable", "Collection", "Set", "MutableSet", "Mapping",
    "MutableMapping", "MappingView", "KeysView", "ItemsView", "ValuesView",
    "Sequence", "MutableSequence", "ByteString",
)


def _restore_moved_abcs():
    """Make `from collections import Iterable` (and friends) work again."""
    for name in _MOVED_ABCS:
        if not hasattr(collections, name) and hasattr(collections.abc, name):
            setattr(collections, name, getattr(collections.abc, name))


def _accept_namedtuple_verbose():
    """Wrap namedtuple so the removed `verbose=` keyword is ignored."""
    original = collections.namedtuple
    if getattr(original, "_rill_shim", False):
        return

    @functools.wraps(original)
    def namedtuple(typename, field_names, *args, verbose=False, **kwargs):
        return original(typename, field_names, *args, **kwargs)

    namedtuple._rill_shim = True
    collections.namedtuple = namedtuple


_restore_moved_abcs()
_accept_namedtuple_verbose()
