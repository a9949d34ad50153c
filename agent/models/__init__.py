"""Model backends: the OpenAI-compatible client and the bundled local model."""
