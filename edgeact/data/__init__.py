"""Sample data: the pixel and array rules, image decoding, preprocessing, evaluation data.

`arrays` holds the one set of rules for sample arrays, `images` decodes image files, `preprocess`
the presets and their arithmetic, `pixel_input` the raw-pixel models' inputs, `evaldata` the
labelled data `profile` and `--eval-data` read.

May import: the core, `edgeact.formats`.
"""
