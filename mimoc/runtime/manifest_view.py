"""What an ONNX or IREE artifact's runner reads from its manifest: one definition for both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ManifestView:
    """The manifest's model record, the model's config and the FLOP counts
    (``self.manifest`` is set by the runner)."""

    manifest: Mapping[str, Any]

    @property
    def model(self) -> Mapping[str, Any]:
        return self.manifest.get("model") or {}

    @property
    def config(self) -> Mapping[str, Any]:
        return self.model.get("config") or {}

    @property
    def flops(self) -> Mapping[str, Any]:
        return self.manifest["flops"]
