"""The HTTP decision service: FastAPI app factory, auth, one router per resource, the per-tenant engines.

``create_app(settings)`` builds the app; ``woolguard serve`` runs it under uvicorn with several workers.
"""

from woolguard.api.app import app_from_env, create_app
from woolguard.api.settings import Settings

__all__ = ["Settings", "app_from_env", "create_app"]
