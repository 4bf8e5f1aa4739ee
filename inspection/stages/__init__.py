"""The daemon's stages, one module each: source -> preprocess -> tile -> batch -> detect -> merge ->
track -> sink. Each runs in its own thread and talks to its neighbours through bounded queues."""
