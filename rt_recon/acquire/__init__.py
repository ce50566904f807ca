"""Scanner-side inputs: files a scanner or a recording leaves on disk, read into volumes.

Read in data-flow order:

* ``watch``     a real-time export folder -> files whose writer is done with them
* ``formats``   a file -> its reader: ``mosaic`` (Siemens), ``enhanced`` (XA),
  ``slices`` (GE, one file per slice), ``parrec`` (Philips), ``nifti``
* ``volume``    one volume in closest canonical RAS+ order, whatever the scanner's
* ``sequence``  a series' volumes in acquisition order; missing/duplicate/late reported
* ``clock``     acquisition time -> LSL clock
* ``bridge``    all of the above, live, onto the LSL volume stream
* ``series``, ``convert``, ``xdf``: a whole recording at once
  (``rt-recon convert``; ``rt_recon.record.runs`` reads any of them for a replay)

docs/acquire.md describes formats, orientation, the bridge and its clock.
"""
