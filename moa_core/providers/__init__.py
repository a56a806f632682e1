"""Model access: litellm calls, the bundled local models, and model discovery."""
