"""service.py's request path: settings, request schema, files, request guard, /version, metrics."""
