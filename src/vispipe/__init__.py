"""vispipe: the library behind the pipeline's scripts (no Snakemake imports here)."""

__version__ = "0.1.0"
