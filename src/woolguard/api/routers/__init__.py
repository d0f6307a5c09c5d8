"""One router per resource: events, decisions, labels, lists, policies, and the operational endpoints."""
