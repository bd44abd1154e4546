"""Slack: signatures, the /aws command, buttons and the background worker."""
