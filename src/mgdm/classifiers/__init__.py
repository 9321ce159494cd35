"""The ten-network zoo (timm), its training on real + synthetic images, and its scoring."""
