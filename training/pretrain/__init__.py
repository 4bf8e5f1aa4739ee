"""Self-supervised pretraining of the YOLO backbone on the training images themselves (no labels, no
downloaded weights): masked-image reconstruction, then ``model.yolo.weights`` starts a detector from it."""
