"""The channel-programming strategy search of the crossbar target (runs the IMC simulator,
so it lives above the runtime layer): :mod:`mimoc.studies.strategy.search`."""

from mimoc.studies.strategy.search import (
    DEFAULT_CANDIDATES,
    Candidate,
    SearchResult,
    link_of,
    search_strategy,
)

__all__ = ["DEFAULT_CANDIDATES", "Candidate", "SearchResult", "link_of", "search_strategy"]
