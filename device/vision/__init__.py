"""Frames to faces: sources, detection, landmarks, alignment, the quality gate, embedding."""
