"""Studies of compiled detectors: latency budgets against the slot target
(:mod:`mimoc.studies.budget`), Markdown reports (:mod:`mimoc.studies.report`) and their
plots (:mod:`mimoc.studies.plots`). They compile through :mod:`mimoc.driver` and run the
artifacts with :mod:`mimoc.runtime`; the command line and the Python API sit above them."""
