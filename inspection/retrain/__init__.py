"""Retraining: operators' reviews back into the model, champion against challenger, safe promotion.

``steel retrain`` (:func:`inspection.retrain.job.run_retrain`) collects the detections reviewed since the last
finished run into a dataset snapshot split by coil (:mod:`.collect`), refusing anything that shows a fixed-set
image (:mod:`.leakage`); fine-tunes a challenger on it with the base data and the promoted snapshots replayed
(:mod:`.merge`, :mod:`.challenger`); calibrates its per-class thresholds and judges both models on the same
fixed set and the new data (:mod:`.gate`, :mod:`.operating`); applies the promotion rule (:mod:`.decide`) and
records everything in the database in one transaction. ``steel models`` (:mod:`.models_cli`) reads the
registry and its activation history.
"""
