"""The model store: named, versioned, content-addressed models."""
