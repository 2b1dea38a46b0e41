import pathlib

import pytest

from systolab.config import config_from_dict

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def root():
    return ROOT


def small_config(rows=4, cols=4, sp=64, acc=32, bus=16, latency=4, mem_kib=256, **extra):
    """A small config for tests that run RTL: quick to build, tiles that exercise every edge."""
    raw = {"array": {"rows": rows, "cols": cols}, "scratchpad": {"depth": sp},
           "accumulator": {"depth": acc}, "memory": {"bus_bytes": bus, "latency": latency, "size_kib": mem_kib}}
    for k, v in extra.items():
        raw.setdefault(k, {}).update(v)
    return config_from_dict(raw, source=f"<test {rows}x{cols}>")
