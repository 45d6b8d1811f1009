"""TBD (Truth Behind DeepFakes) inference engine: media, faces, models, ensemble, explanations, perturbations,
reports, evaluation and the `python -m core` command line."""

__version__ = "0.1.0"
__all__ = ["__version__"]
