"""The Textual TUI: it renders the core's events and sends the user's decisions back."""
