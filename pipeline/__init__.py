"""prmforge orchestration: config, runner, engines, the output store (DESIGN.md §2)."""

__version__ = "0.1.0"
