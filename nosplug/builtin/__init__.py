"""Built-in plugins. Each module registers through the same hooks an outside plugin uses."""
