"""Freed memory of large tensors is kept for the next ones (glibc), in the whole process or
inside a scope, and the opt-out works.

Each case runs in a fresh interpreter: the setting is process-wide and must not leak into the
test process. glibc's ``mallinfo2`` says where a 64 MiB tensor came from: ``hblkhd`` counts the
bytes of blocks mapped on their own (what glibc does by default above its mmap threshold),
``fordblks`` the free bytes kept in the heap.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, json, sys
import torch
from sarcrop.utils.memory import reuse_freed_memory, reusing_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mapped_while_alive(mib=64):
    tensor = torch.ones(mib * 2**18)
    mapped = libc.mallinfo2().hblkhd
    del tensor
    return mapped

state = {}
if sys.argv[1] == "scoped":
    with reusing_freed_memory() as state["applied"]:
        with reusing_freed_memory():  # nested: still in effect after the inner one ends
            pass
        state["mapped_inside"] = mapped_while_alive()
    state["kept_free"] = libc.mallinfo2().fordblks
    # Larger than anything kept: from a mapping of its own again, as by default.
    state["mapped_after"] = mapped_while_alive(256)
else:
    state["applied"] = reuse_freed_memory() if sys.argv[1] == "reuse" else None
    state["mapped_while_alive"] = mapped_while_alive()
    state["kept_free"] = libc.mallinfo2().fordblks
print(json.dumps(state))
"""

SIZE = 64 * 2**20


def glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not glibc(), reason="needs glibc 2.33+ (mallinfo2)")


def probe(mode: str, **env: str) -> dict[str, int | bool | None]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SARCROP_REUSE_MEMORY": "1", **env},
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_glibc_maps_a_large_tensor_on_its_own_by_default() -> None:
    state = probe("default")
    assert state["mapped_while_alive"] >= SIZE  # unmapped again on free, faulted in next time


def test_reuse_serves_large_tensors_from_the_heap_and_keeps_them_when_freed() -> None:
    state = probe("reuse")
    assert state["applied"] is True
    assert state["mapped_while_alive"] < SIZE
    assert state["kept_free"] >= SIZE


def test_scoped_reuse_keeps_the_memory_of_what_ran_inside_and_maps_again_after() -> None:
    state = probe("scoped")
    assert state["applied"] is True
    assert state["mapped_inside"] < SIZE
    assert state["kept_free"] >= SIZE
    assert state["mapped_after"] >= 4 * SIZE


def test_reuse_can_be_switched_off() -> None:
    state = probe("reuse", SARCROP_REUSE_MEMORY="0")
    assert state["applied"] is False
    assert state["mapped_while_alive"] >= SIZE
