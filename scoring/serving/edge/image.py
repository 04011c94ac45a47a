"""The OCI image the Bento is built into: the one place that names its base image."""

from __future__ import annotations

import bentoml

# Built by env/base_image.sh from Debian's packages (no registry needed); env/build_image.sh
# reads this name, and swaps in another base for BASE_IMAGE=... through the bentofile.
BASE_IMAGE = "localhost/credit-scoring-base:bookworm"

# The base already holds Python 3.11, uv and libgomp1. No distro is named on purpose: for a
# known distro BentoML prepends `apt-get install build-essential git`, compilers an image that
# only serves need not carry.
IMAGE = bentoml.images.Image(
    base_image=BASE_IMAGE,
    distro="prebuilt",
    python_version="3.11",
    lock_python_packages=False,
).run(
    # BentoML creates these under its home at start-up; made at build time, they let the
    # container run with a read-only root filesystem (runtime writes go to /tmp).
    "mkdir -p /home/bentoml/bentos /home/bentoml/models /home/bentoml/envs /home/bentoml/tmp"
    " && chown -R bentoml:bentoml /home/bentoml"
)
