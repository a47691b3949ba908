"""Widgets of the dashboard's views."""
