"""tensorflow-datasets cache and download, without TensorFlow (placeholder: being written)."""

from jaxnets.errors import DataUnavailable


def load_cached(name, split, tfds_dir):
    return None


def download_and_load(name, split, tfds_dir, mirror=None):
    from jaxnets.data.sources import how_to_get
    raise DataUnavailable(f"{name}: not found locally and download is not implemented yet; "
                          f"{how_to_get(name)}")
