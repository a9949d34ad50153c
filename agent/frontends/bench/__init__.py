"""`mulligan bench`: strategies side by side on task sets."""
