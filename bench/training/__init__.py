"""The training experiment: the tutorial's models in two frameworks, runs, the sweep.

``python -m bench train ...`` (``train.py``) trains one configuration or the sweep over the
data sets scikit-learn ships and writes loss curves under ``results/<machine>/training/``.
"""
