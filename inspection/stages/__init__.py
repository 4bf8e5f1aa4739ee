"""The daemon's stages, one module each: source -> preprocess -> tile -> batch -> detect -> merge ->
anomaly -> track -> evidence -> sink. Each runs in its own thread and talks to its neighbours through
bounded queues."""
