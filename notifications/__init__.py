"""Notifications service: transfer events in, webhooks and email out."""
