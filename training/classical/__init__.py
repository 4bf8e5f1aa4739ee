"""Fitting the classical texture baseline (scikit-learn) and its ``steel classic`` commands.

Features, bundle reading and prediction are torch-free and live in ``datasets.texture``; this package
only adds what training needs: samples from annotations, the scaler + linear classifier fit, the
per-feature-group ablation, metrics and plots.
"""
