"""Exceptions raised by tritonconv. Every bad input gets one of these with a message naming the problem."""


class TritonConvError(Exception):
    """Base class of every error tritonconv raises on purpose."""


class InvalidInputError(TritonConvError, ValueError):
    """The arguments are wrong: shapes, dtypes, devices or hyper-parameters that F.conv2d would reject too."""


class UnsupportedError(TritonConvError, NotImplementedError):
    """The arguments are valid for PyTorch but tritonconv has no kernel for them (e.g. float64, integers)."""


class InvalidConfigError(TritonConvError, ValueError):
    """A kernel config names an unknown family or parameter, a value outside its choices, or breaks a constraint."""


class CacheError(TritonConvError):
    """The cache file is unreadable, belongs to another program/schema version, or cannot be written."""


class EntryError(CacheError):
    """One cache entry does not validate (the reason is the message)."""
