"""The embedder's input contract, shared by training, export and calibration without TensorFlow."""

import numpy as np

INPUT_SIZE = 112
EMBEDDING_SIZE = 128
# The aligned crop's 0-255 pixels become (pixel - MEAN) / STD, as the manifest says.
MEAN = 127.5
STD = 128.0


def normalise_pixels(crops: np.ndarray) -> np.ndarray:
    """Aligned uint8 RGB crops as the float network's input (the TensorFlow twin is data.normalise)."""
    return (crops.astype(np.float32) - MEAN) / STD
