"""The HTTP edge: settings, start-up, the request guard and refusals, /version, the Arrow route."""
