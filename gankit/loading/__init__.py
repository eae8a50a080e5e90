"""Reading the field's files without running code from them: generator checkpoints (one
importer per format: native, nvidia, rosinality, encoder_decoder; checkpoints dispatches),
the allow-list unpickler (safe_pickle), models by name (zoo), classifiers' declared input,
pSp / e4e / ReStyle encoders (field_encoders) and published direction files (published)."""
