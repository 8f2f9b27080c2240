"""The `patron` command line: `main.py` composes one module per command or command group.
The folder holds more than ~15 modules for that reason: one per `patron` command group, each a few dozen lines.

Commands import what they run inside their function, so `patron --help` and every command start without loading
the models, the data stack or the server.
"""
