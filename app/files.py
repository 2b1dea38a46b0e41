"""The user's files on the command line: model inputs to read, outputs to write.

Everything here is checked before any work starts: an output path that cannot be written (a
missing folder, a folder, the input file itself) is refused up front, so a long run never ends
in an error that loses its result, and nothing the user gave is overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from systolab.errors import UserError

__all__ = ["load_inputs", "save_outputs", "check_output_path", "check_output_dir"]


def load_inputs(path: str | Path, names: list[str]) -> dict[str, np.ndarray]:
    """A model's inputs from X.npy (one input) or X.npz (arrays named like the inputs)."""
    path = str(path)
    if not Path(path).is_file():
        raise UserError(f"{path}: no such input file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises several types for a bad file
        raise UserError(f"{path}: not a .npy/.npz file ({type(e).__name__})") from None
    if isinstance(data, np.ndarray):
        if len(names) != 1:
            raise UserError(f"{path}: the model has {len(names)} inputs ({', '.join(names)}); give an .npz "
                            f"with one array per input name")
        return {names[0]: data}
    with data:
        missing = [n for n in names if n not in data.files]
        if missing:
            raise UserError(f"{path}: no array for input {missing[0]!r} (arrays: {', '.join(data.files)})")
        try:
            return {n: data[n] for n in names}
        except Exception as e:  # noqa: BLE001 - a damaged member of the archive
            raise UserError(f"{path}: cannot read the arrays ({type(e).__name__})") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: str | Path, *, option: str, suffixes: tuple[str, ...] = (),
                      not_one_of: tuple[str | Path | None, ...] = ()) -> Path:
    """`path` can be written as a file: its folder exists, it is not a folder, it has one of
    `suffixes`, and it is not one of the files in `not_one_of` (the inputs of the run)."""
    p = Path(path)
    if suffixes and p.suffix not in suffixes:
        raise UserError(f"{option} must end in {' or '.join(suffixes)}, not {str(path)!r}")
    if p.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    if not p.parent.is_dir():
        raise UserError(f"{option} {path}: folder {str(p.parent)!r} does not exist")
    if not os.access(p.parent, os.W_OK):
        raise UserError(f"{option} {path}: folder {str(p.parent)!r} is not writable")
    for other in not_one_of:
        if other is not None and (_same_file(p, Path(other)) or p.resolve() == Path(other).resolve()):
            raise UserError(f"{option} {path}: is also an input of this run ({other}); it would be "
                            f"overwritten, choose another file")
    return p


def check_output_dir(path: str | Path, *, option: str) -> Path:
    """`path` names a folder to write into (created if needed), not an existing file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {path}: is an existing file, not a folder")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"{option} {path}: cannot create it under {str(parent)!r}")
    return p


def save_outputs(path: str | Path, outputs: dict[str, np.ndarray]) -> None:
    """One output: an .npy; several: an .npz with one array per output name."""
    path = str(path)
    if path.endswith(".npz"):
        np.savez(path, **outputs)
    elif len(outputs) == 1:
        np.save(path, next(iter(outputs.values())))
    else:
        raise UserError(f"--output {path}: the model has {len(outputs)} outputs ({', '.join(outputs)}); "
                        f"give a file name ending in .npz")
