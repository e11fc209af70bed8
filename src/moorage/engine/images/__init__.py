"""Images: the local image index (tags, repo digests), import, load/save, inspect, removal."""

from moorage.engine.images.service import ImageRecord, ImageService

__all__ = ["ImageRecord", "ImageService"]
