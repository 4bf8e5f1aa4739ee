"""Anomaly scoring learned from clean steel only: per-pixel maps and per-tile scores.

Two candidates share one contract (:class:`~training.anomaly.base.AnomalyScorer`): a Gaussian memory
of our own detector backbone's features (PaDiM-style) and a small convolutional autoencoder.
"""
