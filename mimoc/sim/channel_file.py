"""Channel realisations from a file: ``--channel file:H.npy`` (measured channels,
Sionna, ray tracers).

Format: one ``.npy`` array (``numpy.save``), either

- complex ``[N, Nr, Nt]``: ``N`` realisations of the complex channel, receive
  antennas by transmit streams (Sionna's and most measurement data's convention), or
- real ``[N, 2Nr, 2Nt]`` already in mimoc's real form ``[[Re H, -Im H], [Im H, Re H]]``
  (:func:`mimoc.sim.channels.real_matrix`); the block structure is checked. A real
  channel given as ``[N, Nr, Nt]`` must be saved with a complex dtype.

float16/32/64 and complex64/128 are accepted; every entry must be finite.

From Sionna. An OFDM channel ``h_freq`` of ``sionna.channel`` has the shape
``[batch, num_rx, num_rx_ant, num_tx, num_tx_ant, num_ofdm_symbols, fft_size]``. For
one receiver and one transmitter, every resource element is one realisation::

    h = h_freq[:, 0, :, 0]                                # [batch, rx_ant, tx_ant, ofdm, sc]
    H = np.moveaxis(h, (1, 2), (-2, -1)).reshape(-1, nr, nt)    # [N, Nr, Nt]
    np.save("H.npy", H.astype(np.complex64))

(several users, each a stream: take ``h_freq[:, 0, :, :, 0]`` instead, whose transmitter
axis holds the users). Sionna's channel models have CN(0, 1)-like entries with
``normalize_channel=True``, which is the scale mimoc's SNR conventions assume.

Sampling. Each slot takes one realisation drawn uniformly at random, with replacement,
from the generator the simulation passes (the same that draws the noise): the draws of a
BER point stay a function of ``(seed, SNR)`` alone and every detector sees the same
channels, as with the built-in models. Cycling through the file in order instead would
make a point's channels depend on which points ran before it.

Normalisation. ``file:H.npy`` uses the channels as given: the SNR conventions of
:mod:`mimoc.sim.snr` assume ``E|h_ij|^2 = 1``, so a file of another mean power shifts the
effective SNR by that power (as path loss does). ``file:H.npy,normalize`` scales the whole
file by one factor to a mean entry power of 1, keeping the power differences between
realisations (fading) and between antennas.

Safety: the file comes from strangers. It must be a regular file of at most
:data:`MAX_CHANNEL_FILE_BYTES`; it is opened with ``allow_pickle=False`` (object arrays
refused) and memory-mapped, so a header declaring more data than the file holds is
refused before anything is allocated. Anything wrong is one line
(:class:`~mimoc.errors.ModelFileError` for the file, :class:`~mimoc.errors.UsageError`
for sizes that do not match the link).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mimoc.errors import ModelFileError, UsageError
from mimoc.fileio import check_model_file

#: Largest channel file read.
MAX_CHANNEL_FILE_BYTES = 1 << 30
#: Suffix of a spec asking for unit mean power.
NORMALIZE = ",normalize"
_WHAT = "channel file (.npy)"


@dataclass(frozen=True, eq=False)
class FileChannel:
    """Channel realisations read from a file (module docstring).

    Attributes:
        path: the file, as given.
        H: complex realisations ``[N, Nr, Nt]``.
        normalize: whether they were scaled to unit mean entry power.
    """

    path: str
    H: torch.Tensor
    normalize: bool = False

    @property
    def count(self) -> int:
        return self.H.shape[0]

    @property
    def nr(self) -> int:
        return self.H.shape[1]

    @property
    def nt(self) -> int:
        return self.H.shape[2]

    @property
    def spec(self) -> str:
        return f"file:{self.path}{NORMALIZE if self.normalize else ''}"

    def check_sizes(self, nr: int, nt: int) -> None:
        """Refuse a link whose sizes differ from the file's (one line)."""
        if (nr, nt) != (self.nr, self.nt):
            raise UsageError(f"channel file {self.path!r} holds Nr={self.nr} x Nt={self.nt} "
                             f"channels but the link is Nr={nr} x Nt={nt}; run with "
                             f"--nt {self.nt} --nr {self.nr} or give a file of the link's sizes")

    def sample(self, batch: int, nr: int, nt: int, generator: torch.Generator | None = None,
               dtype=torch.complex64) -> torch.Tensor:
        """``batch`` realisations ``[batch, Nr, Nt]``, uniformly at random with replacement."""
        self.check_sizes(nr, nt)
        pick = torch.randint(0, self.count, (batch,), generator=generator)
        return self.H[pick].to(dtype)


def read_channel_array(path: str | os.PathLike) -> np.ndarray:
    """The array of a ``.npy`` channel file, read safely (module docstring)."""
    file = check_model_file(path, _WHAT)
    try:
        size = file.stat().st_size
        if size > MAX_CHANNEL_FILE_BYTES:
            raise ModelFileError(f"{file} is {size} bytes, more than the "
                                 f"{MAX_CHANNEL_FILE_BYTES >> 20} MiB a channel file may have; "
                                 "save fewer realisations")
        array = np.load(file, allow_pickle=False, mmap_mode="r")
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError) as err:
        message = " ".join(str(err).split())[:160] or type(err).__name__
        raise ModelFileError(f"{file} is not a readable .npy array ({message}); save the "
                             "channels with numpy.save") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise ModelFileError(f"{file} is an .npz archive, not one .npy array; save the "
                             "channels with numpy.save")
    if array.dtype.kind not in "fc" or array.dtype.fields is not None:
        raise ModelFileError(f"{file} holds {array.dtype} values; a channel file holds "
                             "complex or float numbers")
    return np.array(array, dtype=np.complex128 if array.dtype.kind == "c" else np.float64)


def _complex_of_real_form(array: np.ndarray, where: str) -> np.ndarray:
    """``[N, 2Nr, 2Nt]`` real form -> complex ``[N, Nr, Nt]``, refusing other matrices."""
    _, rows, cols = array.shape
    if rows % 2 or cols % 2:
        raise ModelFileError(f"{where} is real {list(array.shape)}; a real channel file is "
                             "mimoc's real form [N, 2Nr, 2Nt] (even sizes), else save the "
                             "complex [N, Nr, Nt] array")
    nr, nt = rows // 2, cols // 2
    re, im = array[:, :nr, :nt], array[:, nr:, :nt]
    tol = 1e-5 * max(1.0, float(np.abs(array).max(initial=0.0)))
    if not (np.allclose(array[:, :nr, nt:], -im, rtol=0, atol=tol)
            and np.allclose(array[:, nr:, nt:], re, rtol=0, atol=tol)):
        raise ModelFileError(f"{where} is real {list(array.shape)} but not of mimoc's real "
                             "form [[Re H, -Im H], [Im H, Re H]]; save the complex [N, Nr, Nt] "
                             "array instead")
    return re + 1j * im


def load_channel_file(path: str | os.PathLike, normalize: bool = False) -> FileChannel:
    """Read, check and convert a channel file (module docstring)."""
    array = read_channel_array(path)
    where = str(Path(path))
    if array.ndim != 3 or 0 in array.shape:
        raise ModelFileError(f"{where} has shape {list(array.shape)}; a channel file holds "
                             "complex [N, Nr, Nt] or real [N, 2Nr, 2Nt] realisations (N >= 1)")
    if not np.isfinite(array).all():
        raise ModelFileError(f"{where} holds NaN or infinite entries; every channel entry "
                             "must be a finite number")
    H = array if np.iscomplexobj(array) else _complex_of_real_form(array, where)
    power = float(np.mean(np.abs(H) ** 2))
    if power == 0.0:
        raise ModelFileError(f"{where} holds only zero channels; nothing can be received "
                             "through them")
    if normalize:
        H = H / np.sqrt(power)
    return FileChannel(str(path), torch.from_numpy(np.ascontiguousarray(H)), normalize)


def parse_file_channel(spec: str) -> FileChannel:
    """``file:PATH`` or ``file:PATH,normalize`` -> :class:`FileChannel` (the path keeps its
    case and may contain colons)."""
    kind, _, rest = spec.strip().partition(":")
    if kind.lower() != "file" or not rest.strip():
        raise UsageError(f"malformed channel spec {spec!r}; use file:PATH.npy or "
                         "file:PATH.npy,normalize")
    normalize = rest.lower().endswith(NORMALIZE)
    path = rest[: -len(NORMALIZE)] if normalize else rest
    return load_channel_file(path.strip(), normalize)
