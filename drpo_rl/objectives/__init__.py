"""drpo_rl.objectives."""
