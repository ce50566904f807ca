"""Scanner-side inputs: files a scanner or a recording leaves on disk, read into volumes."""
