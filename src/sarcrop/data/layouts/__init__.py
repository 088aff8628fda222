"""The on-disk layouts :func:`sarcrop.data.reader.open_scenes` recognises.

Importing this package registers them; each layout's ``order`` fixes the detection order (the
most specific first: STAC JSON and cube files are unambiguous, a raster with per-step named bands
or per-band dates is more specific than "one GeoTIFF per acquisition").
"""

from sarcrop.data.layouts import (  # noqa: F401  (importing registers each layout)
    geotiff_per_date,
    multidate_per_pol,
    named_bands,
    stac,
    xarray_cube,
)
