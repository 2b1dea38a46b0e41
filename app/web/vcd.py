"""Per-unit busy intervals of an RTL run, read from its waveform (`run_rtl(..., trace="x.vcd")`).

The simulation top exposes every performance counter as a port `cnt_<name>` (`hw/counters.py`),
counting the cycles its event was true since `start`. A counter that goes up at a clock edge
marks one cycle of its event, and `cnt_cycles` at that edge says which cycle: so the runs of
consecutive increments of `cnt_load_busy` are exactly the cycles the load unit was busy. Only the
top-level ports are read, so this does not depend on internal signal names.
"""

from __future__ import annotations

from pathlib import Path

from systolab.errors import UserError

__all__ = ["busy_intervals", "TraceError", "TRACKS"]

#: counters drawn as Gantt rows, in order: (counter name, row label)
TRACKS = (("load_busy", "load"), ("load_wait", "load (token wait)"),
          ("compute_busy", "compute"), ("array_busy", "array (rows streamed)"),
          ("compute_wait", "compute (token wait)"),
          ("store_busy", "store"), ("store_wait", "store (token wait)"),
          ("fetch_stall", "fetch (queue full)"))


class TraceError(UserError):
    pass


def _declarations(f) -> tuple[dict[str, str], list[str]]:
    """id -> counter name for the shallowest scope holding `cnt_cycles`, and that scope's path."""
    scope: list[str] = []
    found: dict[tuple, dict[str, str]] = {}
    for line in f:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "$scope":
            scope.append(tok[2])
        elif tok[0] == "$upscope":
            scope.pop()
        elif tok[0] == "$var" and tok[4].startswith("cnt_"):
            found.setdefault(tuple(scope), {})[tok[3]] = tok[4][len("cnt_"):]
        elif tok[0] == "$enddefinitions":
            break
    tops = sorted((s for s, v in found.items() if "cycles" in v.values()), key=len)
    if not tops:
        raise TraceError("the waveform has no cnt_cycles port: not a trace of the systolab simulation top")
    return found[tops[0]], list(tops[0])


def busy_intervals(path: str | Path, *, max_bytes: int = 512 << 20) -> dict:
    """{"cycles": n, "tracks": {counter: [[start, end), ...]]}} from a VCD written by the RTL.

    Cycle 0 is the first cycle counted after `start`; intervals are half-open, in cycles.
    """
    path = Path(path)
    if path.suffix != ".vcd":
        raise TraceError(f"{path.name}: the Gantt reads .vcd waveforms, not {path.suffix or 'this file'}")
    if not path.is_file():
        raise TraceError(f"{path.name}: no such waveform")
    if path.stat().st_size > max_bytes:
        raise TraceError(f"{path.name}: waveform is {path.stat().st_size >> 20} MiB, more than the "
                         f"{max_bytes >> 20} MiB the Gantt reads; trace a smaller run")
    with path.open() as f:
        ids, _ = _declarations(f)
        value = {name: 0 for name in ids.values()}
        runs: dict[str, list[list[int]]] = {name: [] for name in ids.values()}
        pending: dict[str, int] = {}              # counters that changed at the current time

        def settle():
            cycle = value["cycles"] - 1           # the cycle that just ended
            for name, old in pending.items():
                new = value[name]
                if name == "cycles" or new != old + 1 or cycle < 0:
                    continue                      # a reset (start) or the cycle counter itself
                r = runs[name]
                if r and r[-1][1] == cycle:
                    r[-1][1] = cycle + 1
                else:
                    r.append([cycle, cycle + 1])
            pending.clear()

        for line in f:
            c = line[:1]
            if c == "#":
                settle()
            elif c == "b":
                bits, _, ident = line[1:].rstrip("\n").partition(" ")
                name = ids.get(ident)
                if name is not None:
                    pending.setdefault(name, value[name])
                    value[name] = int(bits.replace("x", "0").replace("z", "0"), 2)
        settle()
    return {"cycles": value["cycles"], "tracks": {k: v for k, v in runs.items() if k != "cycles"}}
