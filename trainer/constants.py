"""The embedder's input contract, shared by training, export and calibration without TensorFlow."""

INPUT_SIZE = 112
EMBEDDING_SIZE = 128
# The aligned crop's 0-255 pixels become (pixel - MEAN) / STD, as the manifest says.
MEAN = 127.5
STD = 128.0
