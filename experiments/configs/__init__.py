"""ml_collections configs of the experiments: ``--config experiments/configs/NAME.py``."""
