"""ctcrnn: CNN-RNN CTC sequence recognition.

Core (knows no modality): cells, encoder, model, ctc, decoding (with beam_search, fusion, lm, trie,
hashing, external_decoders), alignment, metrics, registry, config, checkpoint, bundle, export, data,
trainer, evaluate. Modalities (``ctcrnn.video``, ...) plug in through
the registries; ``ctcrnn.zoo`` imports them all.
"""
from .registry import create_model, list_models, register_dataset, register_model
from . import zoo  # noqa: F401,E402  (fills the registries)
from .bundle import Bundle, load_bundle, shipped_bundles  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Bundle", "create_model", "list_models", "load_bundle", "register_model", "register_dataset",
           "shipped_bundles", "__version__"]
