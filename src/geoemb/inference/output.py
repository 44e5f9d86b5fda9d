"""Refuse output paths that would destroy an input or fail only after all the work.

Rules of :func:`check_output` (all resolved through symlinks, ``..``, ``./`` and relative paths;
hard links are caught by comparing inodes):

1. the output must not be an existing directory (nor end with a path separator);
2. the output's folder must be creatable: no existing ancestor may be a file, and the nearest
   existing ancestor must be writable;
3. the output must not be the input file, nor any other file GDAL reads for it (sidecars such
   as ``.aux.xml``/``.ovr``/``.msk``, the sources of a VRT);
4. for a Sentinel-2 band-folder input, the output must not be any band file of the folder, nor a
   file inside the folder with a Sentinel-2 band-file name (the next run on that folder would read
   it as a band, or refuse the folder for holding two files of one band). Other names inside the
   folder are allowed (they are never read as bands).
"""

from __future__ import annotations

import os
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from geoemb.errors import OutputError
from geoemb.inference.reader import RasterSource
from geoemb.inference.s2names import S2_FILENAME_REGEX

__all__ = ["check_output"]


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    except OSError:
        return False


def _inputs(source: RasterSource | str | os.PathLike) -> tuple[list[Path], Path | None]:
    """(input files, band folder or None) of an opened source or a path."""
    if isinstance(source, RasterSource):
        path = Path(source.path)
        files = [path, *getattr(source, "input_files", [])]
        return files, path if path.is_dir() else None
    path = Path(source)
    if path.is_dir():
        files = [f for f in path.rglob("*") if S2_FILENAME_REGEX.match(f.name) and f.is_file()]
        return files, path
    try:  # GDAL's file list: the raster, its sidecars, the sources of a VRT
        with rasterio.open(path) as ds:
            return [path, *(Path(f) for f in ds.files)], None
    except (RasterioError, OSError):  # unreadable: open_source reports it
        return [path], None


def check_output(output: str | os.PathLike, source: RasterSource | str | os.PathLike) -> Path:
    """Check that ``output`` can be written without harming the input ``source``.

    Cheap (no pixel reads): call it before loading a model.

    Parameters
    ----------
    output : path
        The class-map GeoTIFF to write.
    source : RasterSource or path
        The opened input, or its path (a raster file or a Sentinel-2 band folder).

    Returns
    -------
    Path
        ``output`` resolved to an absolute path (symlinks followed).

    Raises
    ------
    OutputError
        Naming the output, the input it collides with, and what to do instead.
    """
    out = Path(output)
    if str(output).endswith(("/", os.sep)) or out.is_dir():
        what = "is an existing directory" if out.is_dir() else "names a directory"
        raise OutputError(
            f"output {output} {what}; give a file path such as {out / 'prediction.tif'}"
        )
    anc = out.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise OutputError(f"output {output}: {anc} is not a directory")
    if anc.exists() and not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"output {output}: directory {anc} is not writable")
    files, folder = _inputs(source)
    for f in files:
        if _same_file(out, f):
            raise OutputError(
                f"output {output} is the input {f} (it resolves to {os.path.realpath(out)}); "
                "writing it would replace the input scene; choose another output path"
            )
    if folder is not None:
        real_dir = Path(os.path.realpath(out.parent))
        in_folder = (
            real_dir == Path(os.path.realpath(folder))
            or Path(os.path.realpath(folder)) in real_dir.parents
        )
        if in_folder and S2_FILENAME_REGEX.match(out.name):
            raise OutputError(
                f"output {output} lies in the input band folder {folder} and has a Sentinel-2 "
                "band-file name: the next run on that folder would read it as a band; choose "
                "another name (e.g. prediction.tif) or another folder"
            )
    return Path(os.path.realpath(out))
