"""Named-service endpoints: ``GET /v1/services``, ``POST /v1/services/{name}``."""
