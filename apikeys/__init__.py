"""API keys: long-lived, read-only credentials of a user, optionally limited to some sites."""
