"""Settings: the YAML file, ``SSE_HUB_*`` environment overrides, their checks."""
