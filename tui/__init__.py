"""The Textual dashboard; it reaches a gateway only through the API client."""
