"""The ``drpo-rl`` sub-commands: one module each, their shared options in :mod:`.options`.

``COMMANDS`` maps a sub-command's name to ``"module:function"``, the function adding its
parser (with ``func`` set as a default) to the sub-parsers. A new sub-command is one module
here plus its entry; a new option shared by several sub-commands is one function in
:mod:`drpo_rl.commands.options`.
"""

COMMANDS: dict[str, str] = {
    "bench": "drpo_rl.commands.bench:add_bench_command",
    "evaluate": "drpo_rl.commands.evaluate:add_evaluate_command",
    "generate": "drpo_rl.commands.generate:add_generate_command",
    "load": "drpo_rl.commands.load:add_load_command",
    "ope": "drpo_rl.commands.ope:add_ope_command",
    "recommend": "drpo_rl.commands.recommend:add_recommend_command",
    "train": "drpo_rl.commands.train:add_train_command",
}
