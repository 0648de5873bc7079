"""The detector families by name: the names ``mimoc train`` and checkpoints use."""

from __future__ import annotations

from mimoc.detectors.base import DetectorModule
from mimoc.detectors.detnet import DetNet
from mimoc.detectors.remimo import REMIMO
from mimoc.detectors.sdnet import SDNet
from mimoc.detectors.wesnet import WeSNet
from mimoc.errors import UsageError

#: Family name -> module class; the names ``mimoc train`` and checkpoints use.
FAMILIES: dict[str, type[DetectorModule]] = {
    "detnet": DetNet,
    "wesnet": WeSNet,
    "sdnet": SDNet,
    "remimo": REMIMO,
}


def get_family(name: str) -> type[DetectorModule]:
    """The module class of family ``name``; :class:`UsageError` listing the known ones."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown detector family {name!r}; choose one of "
                         f"{', '.join(sorted(FAMILIES))}") from None
