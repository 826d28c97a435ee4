"""pytest fixtures of the namespace lab (filled in by the lab)."""
