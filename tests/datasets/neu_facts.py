"""What the NEU-DET development split in ``../shared`` is known to hold, counted once by hand.

Several test modules check readers, the audit and the CLI against these numbers; they live here so the
expected values are stated once.
"""

NEU_DEV_IMAGES = 1440
NEU_DEV_BOXES = 3366
NEU_DEV_PER_CLASS = {
    "crazing": 549,
    "inclusion": 811,
    "patches": 715,
    "pitted_surface": 351,
    "rolled-in_scale": 505,
    "scratches": 435,
}
