"""Classical texture features and the linear model that reads them, without torch.

Grey-level histogram, GLCM statistics, LBP histogram, pooled HOG and Sobel/Otsu edge statistics
(``features``) after a few OpenCV preprocessing ops (``preprocess``); a pickle-free bundle of a scaler
and a linear classifier (``bundle``); prediction and per-feature-group contributions (``linear``). The
dashboard's explanation view uses this package, so nothing here may import torch or ``training``; the
fitting side (scikit-learn) lives in ``training.classical``.
"""
