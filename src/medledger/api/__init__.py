"""The REST API served by uvicorn."""

from medledger.api.app import STATUS_OF_CODE, ApiError, create_app

__all__ = ["STATUS_OF_CODE", "ApiError", "create_app"]
