"""Reading model files: generator checkpoints of every format the field writes, one importer
per format (native, nvidia, rosinality, encoder_decoder; gankit.loading.checkpoints dispatches), and
what they share (formats: telling a file's format, reading it, the record they return)."""
