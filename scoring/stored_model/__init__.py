"""The Bento model as both sides see it: the importer writes it, the service reads it."""
