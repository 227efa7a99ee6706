"""ccwatch: a watch-folder daemon for the CloudConvert API v2."""

__version__ = "0.1.0"
