"""Audio modality: reading audio, features, augmentation, frontends and audio datasets.

Importing this package registers its datasets; the core never imports it.
"""
