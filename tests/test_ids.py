"""Ids minted on every request: row ids are random version-4 UUIDs (drawn from os.urandom in blocks), never
repeated, not even across a fork; request ids are unique per process and distinct across processes."""

from __future__ import annotations

import itertools
import os
import uuid

from ionflux.core.models import new_id, new_workspace_id
from ionflux.core.observability import new_request_id


def test_row_ids_are_random_version_4_uuids_that_never_repeat() -> None:
    ids = [new_id() for _ in range(20_000)]  # many buffers' worth
    assert len(set(ids)) == len(ids)
    for value in ids[:: 97]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value
    workspace = new_workspace_id()
    assert len(workspace) == 32 and uuid.UUID(workspace).version == 4
    # Not a counter: consecutive ids (nearly) never share their first 32 bits.
    assert sum(a[:8] == b[:8] for a, b in itertools.pairwise(ids)) < 3


def _in_child(make: object) -> list[str]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: mint a few ids and exit without running any cleanup
        os.close(read)
        os.write(write, "\n".join(make() for _ in range(50)).encode())  # type: ignore[operator]
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read().split("\n")
    os.waitpid(pid, 0)
    return out


def test_a_forked_child_never_repeats_its_parents_ids() -> None:
    new_id()
    new_request_id()  # both generators hold state now; the child must not replay it
    for make in (new_id, new_request_id):
        child = _in_child(make)
        parent = [make() for _ in range(50)]
        assert len(child) == 50 and not set(child) & set(parent)
