"""drpo_rl.models."""
