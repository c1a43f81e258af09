"""BentoML entry points of deploykit (see service.py and bentofile.yaml)."""
