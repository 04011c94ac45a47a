"""import_model.py's steps: resolve, check, choose the threshold, save into the Bento store."""
