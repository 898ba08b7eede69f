"""The model zoo: named architectures with their papers' defaults.

Importing this package registers every built-in modality and architecture; ``ctcrnn/__init__``
imports it, so ``ctcrnn.create_model(name)`` sees them all.
"""
from . import video  # noqa: F401  (registers entries)
