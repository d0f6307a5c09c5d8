"""Storage: the decision log, lists, labels and policy versions, on SQLite or PostgreSQL.

``open_database(url)`` opens the database and migrates it to the newest schema; the repositories
(:class:`DecisionLog`, :mod:`.lists`, :mod:`.labels`, :mod:`.policies`) take the :class:`Database` it returns.
"""

from woolguard.storage.database import Database, default_url, normalise_url, open_database
from woolguard.storage.decision_log import DecisionLog, DecisionPage

__all__ = ["Database", "DecisionLog", "DecisionPage", "default_url", "normalise_url", "open_database"]
