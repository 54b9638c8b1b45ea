"""The built-in modality plugins, one module each, declared as entry points in polymodal's pyproject."""
