"""Atomic file output: every file appears under its final name complete, or not at all.

A writer killed mid-file (SIGKILL, a full disk, a crash of the process) must not leave a truncated NIfTI, PNG,
DICOM SEG or CSV under the name a later step or a person would trust. Everything is first written to a hidden
temporary file in the destination folder (same file system, so the final ``os.replace`` is atomic), flushed to
disk, then renamed over the final name. A leftover ``.partial-*`` file marks an interrupted write and can be
deleted.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import itertools
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import nibabel as nib
import numpy as np
from monai.data import ITKWriter, NibabelWriter, PILWriter
from monai.utils import MetaKeys, convert_data_type
from nibabel.openers import Opener
from nibabel.spatialimages import HeaderDataError

from .medical_io import GZIP, fortran_ordered

__all__ = [
    "PARTIAL_PREFIX",
    "TEXT_ERRORS",
    "AtomicITKWriter",
    "AtomicNibabelWriter",
    "AtomicPILWriter",
    "atomic_open",
    "atomic_path",
    "companion_name",
    "from_text_safe",
    "fsync_file",
    "shortened_name",
    "text_safe",
]

#: Name prefix of the hidden files (and folders) that outputs are written to before their final rename.
PARTIAL_PREFIX = ".partial-"
#: Encoding error handler of the text files written here. A file name that is not valid UTF-8 (bytes of an old
#: Latin-1 archive, which Python holds as surrogates) is written escaped (``\udce9``): the file stays valid UTF-8
#: for the tools that read it, and the run does not fail on its report.
TEXT_ERRORS = "backslashreplace"


def text_safe(text: str) -> str:
    r"""``text`` as it can be written to a UTF-8 file: what UTF-8 cannot encode escaped, as :data:`TEXT_ERRORS` does.

    Args:
        text: any text, e.g. a file name that holds surrogates (``\udce9``) for bytes that are not UTF-8; each
            character UTF-8 cannot encode becomes its backslash escape, the rest stays as it is.

    Example::

        >>> text_safe("latin1_\udce9t\udce9.png")
        'latin1_\\udce9t\\udce9.png'
    """
    return text.encode("utf-8", TEXT_ERRORS).decode("utf-8")


#: (folder, lock file name) -> the open lock file by which a process holds the folder, and that process's id (a
#: forked child inherits the table but not the locks; see hold_folder)
_FOLDER_LOCKS: dict[tuple[Path, str], tuple[IO, int]] = {}


def hold_folder(folder: str | os.PathLike, lock_name: str) -> bool:
    """Takes an exclusive lock on ``folder`` (its file ``lock_name``) for this process; ``False`` if another holds it.

    The operating system releases the lock when the process ends, also after a kill, so a lock is never left
    behind. The lock file is removed when the folder is released (:func:`release_folder`), at the latest when the
    process ends normally or by an exception; a killed process leaves the file, free, for the next one. A process
    may take a folder it already holds again (a notebook's second run after a failed one). Where the system has no
    ``flock`` (Windows) every call succeeds.

    Args:
        folder: the folder to hold (created if needed).
        lock_name: the lock file's name in it; one name per kind of work (a training, a batch run).

    Example::

        >>> hold_folder("bundle/models", ".training.lock")  # doctest: +SKIP
        True
    """
    if sys.platform == "win32":
        return True
    import fcntl

    key = (Path(folder).resolve(), lock_name)
    if key in _FOLDER_LOCKS:
        return True
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / lock_name
    while True:
        handle = open(path, "a")  # noqa: SIM115 - held open while the work runs
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        # the holder before may have removed the file between its opening here and the lock: a lock on the removed
        # file holds nothing, as the next process creates and locks a new one
        if _names_open_file(path, handle):
            break
        handle.close()
    _FOLDER_LOCKS[key] = (handle, os.getpid())
    # the holder, for the message of a process refused (a MONAI Label server's failed training holds it on)
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return True


def folder_holder(folder: str | os.PathLike, lock_name: str) -> str | None:
    """The process holding ``folder`` by :func:`hold_folder` (``lock_name``), as its lock file records it: its
    number and, where the system shows it, its command line; ``None`` when the file names none.

    Example::

        >>> folder_holder("bundle/models", ".training.lock")  # doctest: +SKIP
        'process 4242 (python -m monai.bundle run --config_file configs/train.yaml)'
    """
    try:
        pid = int((Path(folder) / lock_name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    if len(command) > 160:
        command = command[:157] + "..."
    return f"process {pid}" + (f" ({command})" if command else "")


def naming_holder(error: Exception, folder: str | os.PathLike, lock_name: str) -> Exception:
    """``error`` (an exception that takes its message alone) saying which process holds ``folder``, where its lock
    file records one (:func:`folder_holder`)."""
    holder = folder_holder(folder, lock_name)
    return type(error)(f"{error} It is held by {holder}.") if holder else error


def _names_open_file(path: Path, handle: IO) -> bool:
    """Whether ``path`` still names the file open as ``handle``."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def release_folder(folder: str | os.PathLike, lock_name: str) -> None:
    """Gives up this process's lock on ``folder`` taken by :func:`hold_folder`, if it holds one, and removes its file.

    Example::

        >>> release_folder("bundle/models", ".training.lock")  # doctest: +SKIP
    """
    key = (Path(folder).resolve(), lock_name)
    handle, holder = _FOLDER_LOCKS.pop(key, (None, None))
    if handle is None:
        return
    if holder == os.getpid():
        # removed while still locked, so that no other process holds the file it names (see hold_folder)
        with contextlib.suppress(OSError):
            (key[0] / lock_name).unlink()
    handle.close()


@atexit.register
def _release_held_folders() -> None:
    for folder, lock_name in list(_FOLDER_LOCKS):
        release_folder(folder, lock_name)


def from_text_safe(text: str) -> str:
    r"""A file name that :func:`text_safe` escaped, as the file system has it (its bytes that are not UTF-8 back).

    Args:
        text: a name as :func:`text_safe` gave it; each escape ``\udc80`` to ``\udcff`` (a byte that is not
            UTF-8, as Python holds it) becomes that surrogate again, other text stays as it is.

    Example::

        >>> from_text_safe("latin1_\\udce9t\\udce9.png") == "latin1_\udce9t\udce9.png"
        True
    """
    return re.sub(r"\\udc([89a-f][0-9a-f])", lambda match: chr(0xDC00 + int(match.group(1), 16)), text)


def companion_name(path: str | os.PathLike, stem: str, kind: str, suffix: str) -> str:
    """The name of the file of ``kind`` that belongs with the file ``path``: ``<stem><rest>.<ext>`` gives
    ``<kind><rest><suffix>``, any other name ``<name>.<ext>`` gives ``<name>.<kind><suffix>``.

    A cross-validation fold's weights and checkpoint (``model_fold3.pt``, ``checkpoint_fold3.pt``) each have their
    own plan and training lock this way, named after them.

    Args:
        path: the file (its folder is not used).
        stem: the start of the usual names of such files (``model``).
        kind: what the companion file is (``plan``).
        suffix: the companion file's extension (``.json``).

    Example::

        >>> companion_name("models/model_fold3.pt", "model", "plan", ".json")
        'plan_fold3.json'
        >>> companion_name("models/best.pt", "model", "plan", ".json")
        'best.plan.json'
    """
    name = Path(path).stem
    return (kind + name[len(stem) :] if name.startswith(stem) else f"{name}.{kind}") + suffix


def shortened_name(name: str, limit: int, keep: str = "start") -> str:
    """``name``, or where its bytes exceed ``limit`` as much of its start (or end) as fits with a digest of all of it.

    Bytes are counted as the file system gets them (a name that is not UTF-8 is held surrogate-escaped), and the
    cut falls between whole characters. The digest keeps shortened names unique and the same in every run.

    Args:
        name: a file name.
        limit: the most bytes the result may have.
        keep: ``"start"`` (``<start>_<digest>``) or ``"end"`` (``<digest>-<end>``, the extension kept).

    Example::

        >>> shortened_name("a" * 300 + ".png", 20, keep="end")
        '9233e5fe-aaaaaaa.png'
    """
    encoded = os.fsencode(name)
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha1(encoded).hexdigest()[:8]
    room = limit - len(digest) - 1
    characters = reversed(name) if keep == "end" else iter(name)
    kept = sum(1 for end in itertools.accumulate(len(os.fsencode(c)) for c in characters) if end <= room)
    return f"{digest}-{name[len(name) - kept :]}" if keep == "end" else f"{name[:kept]}_{digest}"


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s content to the disk.

    Only what the system holds is flushed: a file still open elsewhere must be flushed there first.

    Args:
        path: an existing file, which is opened for reading and writing (``rb+``), so it must be writable.

    Example::

        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as f:
        ...     _ = f.write(b"{}")
        ...     f.flush()  # from Python's buffer to the system's
        ...     fsync_file(f.name)  # from the system's cache to the disk
    """
    # without it a power loss right after the rename can leave the final name pointing at empty blocks
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _temporary_name(final: Path) -> str:
    """The hidden name ``final`` is written under: its own name after a prefix, within the file system's limit."""
    prefix = f"{PARTIAL_PREFIX}{os.getpid()}-"
    name = final.name
    try:
        limit = os.pathconf(final.parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no such query here (Windows): the common limit
        limit = 255
    # a name near the limit keeps its end (the extension writers choose the format by)
    return prefix + shortened_name(name, limit - len(prefix), keep="end")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed to ``path`` when the block ends without error.

    The temporary file sits in ``path``'s folder (created when missing), is hidden, and ends with ``path``'s own
    name, so writers that pick the format from the extension (``.nii.gz``, ``.png``) behave as for ``path``. On
    an exception it is removed and ``path`` is left as it was (absent, or the previous complete version).

    Args:
        path: the final file name.

    Example::

        >>> with atomic_path("out/mask.nii.gz") as tmp:  # doctest: +SKIP
        ...     nib.save(image, tmp)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(_temporary_name(final))
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, final)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno is None or error.filename not in (None, str(temporary), temporary):
            raise
        # named by the file it was to be (a full disk's "File too large" had named none, a read-only folder the
        # hidden temporary file); the same errno, so the same OSError subclass
        raise OSError(error.errno, error.strerror, str(final)) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` for writing, through :func:`atomic_path`: the file appears only once complete.

    Text is written as UTF-8 with :data:`TEXT_ERRORS` unless ``kwargs`` choose otherwise, so a case name that
    is not valid UTF-8 cannot fail the writing of a report.

    Args:
        path: the final file name.
        mode: a writing mode (``"w"``, ``"wb"``).
        kwargs: further arguments of ``open`` (``newline=""`` for CSV, ``encoding``, ``errors``).

    Example::

        >>> with atomic_open("eval/failures.csv", newline="") as f:  # doctest: +SKIP
        ...     csv.writer(f).writerow(["case", "file", "stage", "error"])
    """
    if "b" not in mode:
        kwargs = {"encoding": "utf-8", "errors": TEXT_ERRORS, **kwargs}
    with atomic_path(path) as temporary, open(temporary, mode, **kwargs) as f:
        yield f


class _AtomicWrite:
    """Mixin for a MONAI ``ImageWriter``: ``write`` goes through :func:`atomic_path`, only a channel is squeezed,
    and data written without resampling is not converted on the way.

    MONAI's ``squeeze_end_dims`` removes every trailing axis of size 1 once the channel is last: the z axis of a
    single-slice volume, or the height of an image one pixel high, which then came out with an axis too few (or
    failed to be written). Here only a single channel axis is removed; the spatial shape stays the input's.

    With ``resample=False`` MONAI's writers still pass the data through ``SpatialResample``, which returns it as
    float32 for the writer to convert to ``output_dtype`` again: for a 512 x 512 x 300 label map a 300 MiB copy
    and two conversions of every voxel. Here it goes to the writer as it is; the file is the same (float32 holds
    every value of 8- and 16-bit types exactly), and wider types are no longer rounded through float32.
    """

    @classmethod
    def resample_if_needed(
        cls,
        data_array: Any,
        affine: Any = None,
        target_affine: Any = None,
        output_spatial_shape: Any = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        if target_affine is None and output_spatial_shape is None and affine is not None:
            return data_array, convert_data_type(affine, output_type=type(data_array))[0]
        return super().resample_if_needed(  # type: ignore[misc]
            data_array, affine, target_affine, output_spatial_shape, **kwargs
        )

    @classmethod
    def convert_to_channel_last(cls, data: Any, channel_dim: Any = 0, squeeze_end_dims: bool = True, **kwargs: Any):
        data = super().convert_to_channel_last(data, channel_dim, squeeze_end_dims=False, **kwargs)  # type: ignore[misc]
        return data[..., 0] if squeeze_end_dims and data.shape[-1] == 1 else data

    def write(self, filename: str | os.PathLike, verbose: bool = True, **kwargs: Any) -> None:
        with atomic_path(filename) as temporary:
            super().write(temporary, verbose=verbose, **kwargs)  # type: ignore[misc]


class _ChunkedWriter(io.RawIOBase):
    """A write-only stream that passes what it is given on to ``target`` in chunks of at least ``chunk`` bytes.

    It can ``tell`` its position and "seek" to it, which is all nibabel asks of a stream it writes an image to.
    """

    def __init__(self, target: IO[bytes], chunk: int) -> None:
        super().__init__()
        self.target, self.chunk = target, chunk
        self.pending = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self.pending += data
        self.position += size
        if len(self.pending) >= self.chunk:
            self.flush()
        return size

    def flush(self) -> None:
        if self.pending:
            self.target.write(self.pending)
            self.pending = bytearray()

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) not in ((self.position, io.SEEK_SET), (0, io.SEEK_CUR)):
            raise io.UnsupportedOperation("a chunked stream only moves forward, by writing")
        return self.position


def _nifti_form_codes(meta: Mapping | None) -> tuple[int, int]:
    """The ``(sform_code, qform_code)`` of the NIfTI study whose metadata ``meta`` is, for an output written for it.

    MONAI's ``NibabelReader`` (through which the project's reader gives NIfTI studies) keeps the header's fields in
    the metadata. Other formats (NRRD, MHA, DICOM) have no codes and get 1 (scanner) for both, as MONAI writes; so
    does a code that nibabel cannot write.

    Args:
        meta: an image's metadata (``MetaTensor.meta``), or ``None``.

    Example::

        >>> _nifti_form_codes({"sform_code": 4, "qform_code": 0}), _nifti_form_codes({})
        ((4, 0), (1, 1))
    """
    known = nib.nifti1.xform_codes.value_set()
    codes = [int((meta or {}).get(key, 1)) for key in ("sform_code", "qform_code")]
    return tuple(code if code in known else 1 for code in codes)  # type: ignore[return-value]


# the header fields of a NIfTI qform beside its code and pixdim: its rotation (quaternion) and offset
_QFORM_FIELDS = ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
# the fields that place a NIfTI's voxels beside pixdim (the qform's voxel sizes and handedness, qfac): both forms
_GEOMETRY_FIELDS = (*_QFORM_FIELDS, "qform_code", "sform_code", "srow_x", "srow_y", "srow_z")


def _nifti_study_header(meta: Mapping | None) -> nib.Nifti1Header | None:
    """A header holding the fields that place the voxels of the NIfTI study whose metadata ``meta`` is.

    MONAI's ``NibabelReader`` keeps the header's fields in the metadata (in mm: the project's reader has scaled a
    header in meters or microns), pixdim as loaded in ``original_pixdim``: MONAI's spatial transforms set
    ``pixdim`` to the voxel sizes of the affine they make. Other formats have none, and give ``None``.

    Args:
        meta: an image's metadata (``MetaTensor.meta``), or ``None``.

    Example::

        >>> study = nib.Nifti1Image(np.zeros((2, 2, 2)), np.diag([2.0, 2.0, 3.0, 1.0])).header
        >>> meta = {**study, MetaKeys.ORIGINAL_PIXDIM: study["pixdim"]}
        >>> float(_nifti_study_header(meta).get_qform()[2, 2]), _nifti_study_header({"sform_code": 1})
        (3.0, None)
    """
    if meta is None or any(key not in meta for key in (*_GEOMETRY_FIELDS, MetaKeys.ORIGINAL_PIXDIM)):
        return None
    header = nib.Nifti1Header()
    for key in _GEOMETRY_FIELDS:
        # a batch's metadata, decollated, holds tensors
        header[key] = np.asarray(meta[key])
    header["pixdim"] = np.asarray(meta[MetaKeys.ORIGINAL_PIXDIM])
    return header


class _ChunkedNifti1Image(nib.Nifti1Image):
    """A ``Nifti1Image`` whose file gets the bytes nibabel writes, handed to the compressor in large chunks.

    Its header is written in mm with ``form_codes``, the ``(sform_code, qform_code)`` of the study it belongs to
    (see ``_nifti_form_codes``), in place of the code 1 (scanner) that MONAI's writer gives both forms: a study in a
    template space (codes 2 to 4) keeps its space, and a form the study did not have is not made up. On the study's
    own voxel grid (its affine), the file gets the study's qform as stored, ``study`` (see ``_nifti_study_header``):
    tools that read the qform (ITK) then place it where they place the study, also where the study's sform is
    sheared, which no qform can hold. Elsewhere, a sheared affine is written as an sform alone: a qform, its
    orthogonal approximation, would put the labels elsewhere (14 mm at the far corner of a test study) in those
    tools.
    """

    #: 16 MiB: a 512 x 512 x 300 label map reaches gzip in 5 calls instead of 300
    chunk = 1 << 24

    def __init__(
        self,
        *args: Any,
        form_codes: tuple[int, int] = (1, 1),
        study: nib.Nifti1Header | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.form_codes = form_codes
        self.study = study

    def _set_geometry(self) -> None:
        """The header's unit and forms: the affine in mm, under ``form_codes``; the study's qform on its grid."""
        sform_code, qform_code = self.form_codes
        affine = np.array(self.affine)
        # without units ITK-based tools read the numbers as mm anyway; with them, no reader has to assume
        self.header.set_xyzt_units("mm")
        if self._on_study_grid(affine):
            # field by field: the qform rebuilt from the affine (set_qform) is the study's only to float precision
            for key in _QFORM_FIELDS:
                self.header[key] = self.study[key]  # type: ignore[index]
            self.header["qform_code"] = qform_code
            pixdim = self.header["pixdim"].copy()
            pixdim[:4] = self.study["pixdim"][:4]  # type: ignore[index]
            self.header["pixdim"] = pixdim
        else:
            try:
                self.set_qform(affine, code=qform_code, strip_shears=False)
            except HeaderDataError:
                self.set_qform(None, code=0)
                sform_code = sform_code or 1  # the sform is then the only place of the affine
        self.set_sform(affine, code=sform_code)

    def _on_study_grid(self, affine: np.ndarray) -> bool:
        # a study with a qform, whose affine (the sform where it has one) the file's is, to the float32 it is stored in
        if self.study is None or int(self.study["qform_code"]) == 0:
            return False
        return bool(np.allclose(affine, self.study.get_best_affine(), rtol=1e-6, atol=1e-6))

    def to_filename(self, filename: Any, **kwargs: Any) -> None:
        # here, as MONAI's writer sets both forms with code 1 after making the image and before saving it
        self._set_geometry()
        with _nifti_file(filename) as opened, _ChunkedWriter(opened, self.chunk) as stream:
            self.to_stream(stream, **kwargs)
            stream.flush()


@contextlib.contextmanager
def _nifti_file(filename: Any) -> Iterator[IO[bytes]]:
    """``filename`` opened to write as nibabel's ``Opener`` opens it, a ``.gz`` compressed by :data:`GZIP` (ISA-L
    where installed): the stream nibabel writes, at its level 1, without a file name or time in its header."""
    if not str(filename).lower().endswith(".gz"):
        with Opener(filename, "wb") as opened:
            yield opened
        return
    with (
        open(filename, "wb") as raw,
        GZIP.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=raw, mtime=0) as opened,
    ):
        yield opened


class AtomicNibabelWriter(_AtomicWrite, NibabelWriter):
    """MONAI's ``NibabelWriter`` (NIfTI) with atomic writes; for ``SaveImaged(writer=...)``.

    The file holds the bytes nibabel would write, produced with a few large calls instead of one per slice:
    nibabel copies a C-ordered volume into the file's order (x fastest) slice by slice and compresses each slice
    on its own, and beside another thread (the DICOM SEG writer, with ``ConcurrentCompose``) each of those
    hundreds of calls waits for Python's global lock. Here a 3D volume is first copied into the file's order in
    cache-sized blocks (one more copy of it in memory), and gzip gets 16 MiB at a time; on a 512 x 512 x 300 CT
    the NIfTI and the DICOM SEG written side by side take 0.47 s instead of 0.60 s.

    The header is in mm and keeps the form codes of the study the data belong to (taken from the metadata of a
    NIfTI study; 1, scanner, for other formats, as MONAI writes). On a NIfTI study's own grid the file gets the
    study's qform as stored, beside the study's sform, sheared or not; elsewhere there is no qform where the affine
    is sheared. The file overlays its study in ITK-based tools as in nibabel.

    Args:
        output_dtype: data type of the voxels in the file (default ``np.float32``); ``SaveImage(d)`` passes its
            own ``output_dtype``.
        kwargs: further attributes of the writer, as MONAI's ``ImageWriter`` takes them (``SaveImage(d)`` passes
            its ``scale``).

    Example::

        >>> SaveImaged("pred", output_ext=".nii.gz", writer=AtomicNibabelWriter)  # doctest: +SKIP
    """

    #: ``(sform_code, qform_code)`` of the file; ``set_metadata`` takes them from the study's metadata
    form_codes: tuple[int, int] = (1, 1)
    #: the placing header fields of the NIfTI study the data belong to (``None`` for other formats), from
    #: ``set_metadata``
    study: nib.Nifti1Header | None = None

    def set_metadata(self, meta_dict: Mapping | None, resample: bool = True, **options: Any) -> None:
        """MONAI's ``set_metadata``; the study's NIfTI form codes and placing fields are kept for the file.

        Args:
            meta_dict: the metadata of the data written (``affine``, ``original_affine``, ``spatial_shape``, and
                the header fields of a NIfTI study).
            resample: resample the data to ``original_affine``.
            options: resampling options of MONAI's ``set_metadata``.
        """
        super().set_metadata(meta_dict, resample=resample, **options)
        self.form_codes = _nifti_form_codes(meta_dict)
        self.study = _nifti_study_header(meta_dict)

    def write(self, filename: str | os.PathLike, verbose: bool = True, **obj_kwargs: Any) -> None:
        """MONAI's ``write``, atomic, the file getting the study's form codes (and qform, on its grid).

        Args:
            filename: the final file name.
            verbose: log the file name.
            obj_kwargs: arguments of ``create_backend_obj`` (``header``, ``extra``).
        """
        super().write(filename, verbose=verbose, form_codes=self.form_codes, study=self.study, **obj_kwargs)

    @classmethod
    def create_backend_obj(
        cls,
        data_array: Any,
        affine: Any = None,
        dtype: Any = None,
        form_codes: tuple[int, int] = (1, 1),
        study: nib.Nifti1Header | None = None,
        **kwargs: Any,
    ) -> nib.Nifti1Image:
        image = super().create_backend_obj(data_array, affine=affine, dtype=dtype, **kwargs)
        data = fortran_ordered(np.asanyarray(image.dataobj))
        return _ChunkedNifti1Image(
            data, image.affine, image.header, extra=image.extra, form_codes=form_codes, study=study
        )


class AtomicPILWriter(_AtomicWrite, PILWriter):
    """MONAI's ``PILWriter`` (PNG, JPEG, ...) with atomic writes; for ``SaveImaged(writer=...)``.

    A mask of an image whose EXIF orientation :class:`~monai_unets.transforms.Image2DReader` left unapplied (a
    phone photograph stored sideways) has the image's stored grid and gets the same orientation tag, so that a
    viewer turns both alike and shows the mask over the lesion it shows.

    Args:
        output_dtype: data type of the pixels in the file (default ``np.float32``); ``SaveImage(d)`` passes its
            own, which it makes ``uint8`` for a ``.png`` unless it is ``uint8`` or ``uint16``.
        channel_dim: the channel axis of the data, kept as an attribute (default 0; ``None``: no channel axis);
            the data written are converted by the ``channel_dim`` that ``set_data_array`` is given.
        scale: ``255`` or ``65535`` clips the data to [0, 1] and scales them to [0, 255] (uint8) or [0, 65535]
            (uint16); ``None`` writes the values as they are. Default 255; ``SaveImage(d)`` passes its own
            ``scale``, ``None`` unless given.
        kwargs: further attributes of the writer, as MONAI's ``ImageWriter`` takes them.

    Example::

        >>> SaveImaged("pred", output_ext=".png", writer=AtomicPILWriter)  # doctest: +SKIP
    """

    #: the EXIF block the file gets (``None``: none); ``set_metadata`` makes it from the image's orientation
    exif: Any = None

    def set_metadata(self, meta_dict: Mapping | None = None, resample: bool = True, **options: Any) -> None:
        """MONAI's ``set_metadata``; the image's EXIF orientation is kept for the file.

        Args:
            meta_dict: the metadata of the data written (``spatial_shape``, and ``exif_orientation`` from
                ``Image2DReader``).
            resample: resample the data to ``spatial_shape``.
            options: resampling options of MONAI's ``set_metadata``.
        """
        from ..transforms.io import EXIF_ORIENTATION_KEY, orientation_exif

        super().set_metadata(meta_dict, resample=resample, **options)
        self.exif = orientation_exif(int((meta_dict or {}).get(EXIF_ORIENTATION_KEY, 1)))

    def write(self, filename: str | os.PathLike, verbose: bool = False, **kwargs: Any) -> None:
        """MONAI's ``write``, atomic, with the image's EXIF orientation where it has one.

        Args:
            filename: the final file name.
            verbose: log the file name.
            kwargs: arguments of ``create_backend_obj`` and of ``PIL.Image.save``.
        """
        if self.exif is not None:
            kwargs.setdefault("exif", self.exif)
        super().write(filename, verbose=verbose, **kwargs)


class AtomicITKWriter(_AtomicWrite, ITKWriter):
    """MONAI's ``ITKWriter`` (NRRD, MHA, NIfTI) with atomic writes; for ``SaveImaged(writer=...)``.

    Args:
        output_dtype: data type of the voxels in the file (default ``np.float32``); ``SaveImage(d)`` passes its
            own ``output_dtype``.
        affine_lps_to_ras: the data's affine is RAS (as MONAI's readers and ``NibabelWriter`` have it) and is
            turned to ITK's LPS for the file; ``False``: it is LPS already; ``None``: the data's ``space``
            metadata decides. Default ``True``.
        kwargs: further attributes of the writer, as MONAI's ``ImageWriter`` takes them (``SaveImage(d)`` passes
            its ``scale``).

    Example::

        >>> SaveImaged("pred", output_ext=".nrrd", writer=AtomicITKWriter)  # doctest: +SKIP
    """
