"""sarcrop: crop mapping from Sentinel-1 SAR time series with transfer learning.

A 3D recurrent U-Net pre-trained on one region, transferred to others with few labels.
"""

__version__ = "0.15.0"
