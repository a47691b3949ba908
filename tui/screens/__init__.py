"""Modal dialogs of the dashboard."""
