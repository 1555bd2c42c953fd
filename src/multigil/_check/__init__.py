"""``multigil check``: which modules can be imported in an isolated interpreter.

The parts, each small:

:mod:`.cli`
    the subcommand's arguments, and what it does with them;
:mod:`.targets`
    which module names to check (given, installed, or from a requirements file);
:mod:`.runner`
    runs the checks in child processes, in batches, with a timeout each, and
    survives a child that crashes; queues the submodules packages name;
:mod:`.worker`
    the child process: one fresh interpreter per module;
:mod:`.probe`
    what runs inside that interpreter (standard library only): the import,
    and the walk of a package's submodules;
:mod:`.packages`
    a package's verdict from its submodules' (``partial``);
:mod:`.report`
    the tables (per module, per distribution), the summary and the JSON;
:mod:`.markdown`
    the same as a Markdown page, with advice for library authors.

Nothing is imported here: ``multigil --help`` imports :mod:`.cli`, and every
checking interpreter imports :mod:`.probe`, through this package.
"""
