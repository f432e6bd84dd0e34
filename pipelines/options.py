"""Beam pipeline options for rex, with a local runner that never reaches the internet.

Beam's default DirectRunner first tries to download the Prism runner on every run; rex runs
locally on the in-process FnApiRunner unless the caller names another runner (e.g.
`--runner=DataflowRunner --project=... --region=...` for scale-out).
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(beam_args: list[str] | None = None) -> PipelineOptions:
    """PipelineOptions from pass-through Beam arguments, defaulting to the local runner."""
    args = list(beam_args or [])
    options = PipelineOptions(args)
    if not options.view_as(StandardOptions).runner:
        options = PipelineOptions(args + [f"--runner={LOCAL_RUNNER}"])
    return options
