"""Subscriber authentication: tokens, tickets, scopes, subjects and redaction (issue #14)."""
