"""visionflow."""
