"""sarcrop: crop mapping from Sentinel-1 SAR time series with a 3D recurrent U-Net and transfer learning."""

__version__ = "0.1.0"
