"""Retraining: operators' reviews back into the model, champion against challenger, safe promotion.

``steel retrain`` (:func:`inspection.retrain.job.run_retrain`) collects the detections reviewed since the last
finished run into a dataset snapshot (:mod:`.collect`), fine-tunes a challenger on it with the base data
replayed, evaluates champion and challenger on the same fixed set and on the new data, applies the
promotion rule (:mod:`.decide`) and records everything in the database in one transaction.
"""
