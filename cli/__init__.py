"""The `nmt` command line: a thin Typer + rich shell around the `nmt` library."""
