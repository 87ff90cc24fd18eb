"""Detector models: the manifest of those in use, and scripts to fine-tune, export and score them.

Model files live outside the repository (a gateway's model folder; tests use ../shared/models).
"""
