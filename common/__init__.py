"""Small helpers shared by every part of mmhlop: user errors, CLI flags, atomic files, devices."""
