"""Data builders: WEval benchmarks, WRL reward-model pairs and GRPO prompt files.

Shared pieces: :mod:`.runner` (the one runner: work store, teacher units, rejects, summary,
typed errors for the CLI), :mod:`.store` (resumable work store, atomic final writes).
Builders import their heavy dependencies (embedders, teachers) only when they run.
"""
