"""What the model sees: the repository map, implicated source, localization."""
