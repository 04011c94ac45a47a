"""The embedded demo MLflow store: a credit team's experiments and one production model.
Not part of the product package and never shipped in the image."""
