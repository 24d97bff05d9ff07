"""The one version string (pyproject.toml reads it; dmft_jax.__version__ is it)."""
__version__ = "0.3.0.dev0"
