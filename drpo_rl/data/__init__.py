"""drpo_rl.data."""
