"""Sample data: the pixel and array rules, image decoding, preprocessing, evaluation data.

`source` is the one reader of sample data (image folders, .npy/.npz, arrays, iterables) for
calibration, `profile --data` and `--eval-data` alike, and `samples` the one container it fills
(model inputs by input name, labels, a summary). `arrays` holds the rules for sample arrays,
`images` decodes image files, `preprocess` the presets and their arithmetic, `pixel_input` the
raw-pixel models' inputs, `stream` a source read in chunks (bounded memory, decoded ahead by a
thread pool).

May import: the core, `edgeact.formats`.
"""
