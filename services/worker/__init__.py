"""Celery workers that train objectives and publish results back to the suggester."""
