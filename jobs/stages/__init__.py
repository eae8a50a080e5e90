"""The stages: each module a config, a driver function and a part worker (sample, label, fit,
edit, invert, align, metrics, interpolate, paste_back, directions_import, demo, the pipeline
driver; report and dataset are packages), and what stages share (rendering, conditioning,
the edit and paste-back helpers split from their stage modules)."""
