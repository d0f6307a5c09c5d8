"""Reputation: what is known about a phone number, an IP or a device before any velocity is counted."""
