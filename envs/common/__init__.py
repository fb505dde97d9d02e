"""The ground floor: rules that every layer of the suite uses, each implemented once.

- :mod:`envs.common.checks`: argument validators with one message format;
- :mod:`envs.common.tables`: reading delimited files strictly, with the one ``TableError``;
- :mod:`envs.common.files`: atomic, durable file writes, JSON documents, file hashes;
- :mod:`envs.common.processes`: process liveness and stopping child processes.

`envs` and `drpo_rl` both build on these modules; they import nothing of either package
beyond this folder.
"""
