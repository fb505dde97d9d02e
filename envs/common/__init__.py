"""The ground floor: rules that every layer of the suite uses, each implemented once.

`envs` and `drpo_rl` both build on these modules; they import nothing of either package
beyond this folder.
"""
