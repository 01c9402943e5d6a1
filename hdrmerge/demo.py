"""``python -m hdrmerge.demo [OUT_DIR]``: write the synthetic example bracket.

Three JPEGs at −2, 0 and +2 EV with EXIF exposure tags and a moving ball; used
by ``make example`` (see README.md).
"""

from hdrmerge.demo_scene import main

if __name__ == "__main__":
    main()
