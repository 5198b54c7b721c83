"""Who is this: the gallery, matching, threshold calibration, enrollment, the export file."""
