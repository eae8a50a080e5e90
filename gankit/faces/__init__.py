"""Real faces: FFHQ alignment and paste-back, and identity measures (dlib, ArcFace)."""
