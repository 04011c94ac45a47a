"""The credit-scoring product, one sub-package per job.

importing/        import_model.py's steps: find the production run in MLflow, prove it, save it
serving/          service.py's request path: settings, request schema, files, guard, /version
bentoml_patches/  fixes to BentoML internals, installed by one fenced call
stored_model/     what the importer writes and the service reads: files, labels, compiled forest
"""
